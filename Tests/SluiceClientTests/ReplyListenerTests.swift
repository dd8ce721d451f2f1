import Foundation
@testable import SluiceClient
import SluiceCore
import Testing

/// The waiting room of a client's reply queue, fed by hand (no broker).
@Suite("Reply listener")
struct ReplyListenerTests {
    static func outcome(_ id: String, _ kind: TaskEvent.Kind = .succeeded, result: String? = "1") -> TaskEvent {
        var event = TaskEvent(kind: kind, task: TaskEnvelope(id: id, name: "t", queue: "q", arguments: []))
        event.result = result
        return event
    }

    /// Waits (up to 10 s) until `condition` holds.
    static func until(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw SluiceError(.timedOut, "the condition did not hold within 10 s") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    @Test("an outcome that came before anyone asked is kept until asked for once; the first of a task's outcomes wins")
    func keptUntilAsked() async throws {
        let listener = ReplyListener(queue: "p.reply.x")
        listener.deliver(Self.outcome("a", result: "first"))
        listener.deliver(Self.outcome("a", result: "second"))
        #expect(try await listener.wait(for: "a", timeout: .seconds(5)).result == "first")
        // Taken: a second ask waits for another outcome.
        await #expect(throws: SluiceError.self) { try await listener.wait(for: "a", timeout: .milliseconds(50)) }
    }

    @Test("every waiter for a task gets its outcome; other tasks' waiters go on waiting")
    func waitersGetIt() async throws {
        let listener = ReplyListener(queue: "p.reply.x")
        async let first = listener.wait(for: "b", timeout: .seconds(30))
        async let second = listener.wait(for: "b", timeout: .seconds(30))
        let other = Task { try await listener.wait(for: "c", timeout: .seconds(30)) }
        // Deliver only once both waits are registered (a delivery goes to the
        // waiters there are; with none it is kept for one asker only).
        try await Self.until { listener.waiting(for: "b") == 2 }
        listener.deliver(Self.outcome("b", .dead, result: nil))
        #expect(try await first.kind == .dead)
        #expect(try await second.kind == .dead)
        other.cancel()
        await #expect(throws: CancellationError.self) { try await other.value }
    }

    @Test("a timeout, a cancellation before the wait registered, and an ended consumer each end the wait")
    func endings() async throws {
        let listener = ReplyListener(queue: "p.reply.x")
        await #expect(throws: SluiceError.self) { try await listener.wait(for: "none", timeout: .milliseconds(20)) }
        let cancelled = Task { try await listener.wait(for: "none", timeout: .seconds(600)) }
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        let waiting = Task { try await listener.wait(for: "none", timeout: .seconds(600)) }
        try await Self.until { listener.waiting(for: "none") == 1 }
        await listener.stop()
        await #expect(throws: (any Error).self) { try await waiting.value }
        #expect(listener.hasEnded)
        await #expect(throws: (any Error).self) { try await listener.wait(for: "later", timeout: .seconds(600)) }
    }

    @Test("outcomes nobody asks for are capped: the oldest go first")
    func capped() async throws {
        let listener = ReplyListener(queue: "p.reply.x")
        for i in 0..<(ReplyListener.keptOutcomes + 5) { listener.deliver(Self.outcome("t\(i)")) }
        await #expect(throws: SluiceError.self) { try await listener.wait(for: "t0", timeout: .milliseconds(20)) }
        #expect(try await listener.wait(for: "t\(ReplyListener.keptOutcomes + 4)", timeout: .seconds(5)).taskID == "t\(ReplyListener.keptOutcomes + 4)")
    }
}
