@testable import SluiceClient
import Synchronization
import Testing

@Suite("DeclaredOnce: a client's declarations, once per key (no server)")
struct DeclaredOnceTests {
    struct Refused: Error {}

    /// Counts declarations and what each declared; fails while `failing` is set.
    final class Declarations: Sendable {
        let made = Mutex<[[String]]>([])
        let failing = Mutex(false)

        func declare(_ keys: [String]) async throws {
            made.withLock { $0.append(keys) }
            // Long enough for the other callers to arrive while it runs.
            for _ in 0..<20 { await Task.yield() }
            if failing.withLock({ $0 }) { throw Refused() }
        }
    }

    @Test("callers asking at once share one declaration; a later call declares only the keys not yet declared")
    func oneDeclarationForABurst() async throws {
        let declarations = Declarations()
        let once = DeclaredOnce { try await declarations.declare($0) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<500 { group.addTask { try await once.ensure(["emails"]) } }
            try await group.waitForAll()
        }
        #expect(declarations.made.withLock { $0 } == [["emails"]])
        try await once.ensure(["emails", "reports", "images"])
        #expect(declarations.made.withLock { $0 } == [["emails"], ["images", "reports"]])
        try await once.ensure(["reports"])
        #expect(declarations.made.withLock { $0.count } == 2)
    }

    @Test("a failed declaration fails every caller that waited for it, and the next call tries again")
    func failureIsRetried() async throws {
        let declarations = Declarations()
        declarations.failing.withLock { $0 = true }
        let once = DeclaredOnce { try await declarations.declare($0) }
        let failures = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<50 { group.addTask { (try? await once.ensure(["emails"])) == nil } }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        let attempts = declarations.made.withLock { $0.count }
        #expect(failures == 50)
        #expect(attempts >= 1 && attempts < 50, "\(attempts) declarations for 50 callers")
        declarations.failing.withLock { $0 = false }
        try await once.ensure(["emails"])
        try await once.ensure(["emails"])
        #expect(declarations.made.withLock { $0.count } == attempts + 1)
    }

    @Test("a caller cancelled while the declaration runs stops waiting; the declaration goes on and counts for the next caller")
    func cancelledCallerLeavesTheDeclaration() async throws {
        let (started, startedNow) = AsyncStream<Void>.makeStream()
        let (gate, open) = AsyncStream<Void>.makeStream()
        let calls = Mutex(0)
        let once = DeclaredOnce { _ in
            calls.withLock { $0 += 1 }
            startedNow.yield()
            for await _ in gate { break }
        }
        let first = Task { try await once.ensure(["emails"]) }
        for await _ in started { break }
        first.cancel()
        // Returns on its cancellation, with the declaration still held at the
        // gate (bounded: a caller that waits for the declaration would hang here).
        let outcome = await withTaskGroup(of: Result<Void, any Error>?.self) { group in
            group.addTask { await first.result }
            group.addTask { try? await Task.sleep(for: .seconds(60)); return nil }
            let outcome = await group.next()!
            // Timed out: open the gate, or the group would wait for the caller for ever.
            if outcome == nil { open.yield() }
            group.cancelAll()
            return outcome
        }
        open.yield()
        let returned = try #require(outcome, "the cancelled caller was still waiting after 60 s")
        #expect(throws: CancellationError.self) { try returned.get() }
        try await once.ensure(["emails"])
        try await once.ensure(["emails"])
        #expect(calls.withLock { $0 } == 1, "declarations: \(calls.withLock { $0 })")
    }
}
