@testable import SluiceCoordinator
import SluiceTesting
import Synchronization
import Testing

@Suite("Coalesced lookups: a definition's latest version for many starts")
struct CoalescedLookupTests {
    /// A store whose lookups are held in flight until the test releases them.
    final class HeldStore: Sendable {
        let version = Mutex(1)
        let calls = Mutex(0)
        let began = (0..<3).map { _ in OneShotSignal() }
        let releases = (0..<3).map { _ in OneShotSignal() }

        func lookup() async -> Int {
            let value = version.withLock { $0 }
            let n = calls.withLock { $0 += 1; return $0 }
            began[min(n, 3) - 1].fire()
            await releases[min(n, 3) - 1].wait()
            return value
        }
    }

    @Test("callers that ask while a lookup runs share the next one, which sees what was written before they asked")
    func sharedAndFresh() async throws {
        let store = HeldStore()
        // Lookups beyond the second (none, if they are shared) are not held:
        // a lookup per caller fails the count below instead of hanging.
        store.releases[2].fire()
        let lookups = CoalescedLookup<Int> { _ in await store.lookup() }
        // The first caller's lookup is held in flight.
        let first = Task { try await lookups.value(for: "w") }
        try await within(30, "the first lookup begins") { await store.began[0].wait() }
        // A registration finishes while it runs; then 50 callers ask.
        store.version.withLock { $0 = 2 }
        let later = (0..<50).map { _ in Task { try await lookups.value(for: "w") } }
        try await within(30, "50 callers waiting") {
            while lookups.waitingCount(for: "w") < 50 { try await Task.sleep(for: .milliseconds(5)) }
        }
        // They cannot share the lookup in flight (it began before they
        // asked, and read version 1): they share the next.
        store.releases[0].fire()
        #expect(try await first.value == 1)
        try await within(30, "the second lookup begins") { await store.began[1].wait() }
        store.releases[1].fire()
        for task in later { #expect(try await task.value == 2, "every later caller sees the version written before it asked") }
        #expect(store.calls.withLock { $0 } == 2, "51 callers, two lookups")
    }

    @Test("a failed lookup fails those who shared it; the next caller looks up again")
    func failureIsShared() async throws {
        struct Away: Error {}
        let fail = Mutex(true)
        let calls = Mutex(0)
        let lookups = CoalescedLookup<Int> { _ in
            calls.withLock { $0 += 1 }
            if fail.withLock({ $0 }) { throw Away() }
            return 7
        }
        await #expect(throws: Away.self) { try await lookups.value(for: "w") }
        fail.withLock { $0 = false }
        #expect(try await lookups.value(for: "w") == 7)
        #expect(calls.withLock { $0 } == 2)
        #expect(lookups.waitingCount(for: "w") == 0)
    }
}
