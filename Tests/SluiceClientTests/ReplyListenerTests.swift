import Foundation
@testable import SluiceClient
import SluiceCore
import SluiceWire
import Testing

/// The waiting room of a client's reply queue, fed by hand (no broker).
@Suite("Reply listener")
struct ReplyListenerTests {
    static func outcome(_ id: String, _ kind: TaskEvent.Kind = .succeeded, result: String? = "1") -> TaskEvent {
        var event = TaskEvent(kind: kind, task: TaskEnvelope(id: id, name: "t", queue: "q", arguments: []))
        event.result = result
        return event
    }

    /// Waits (up to 60 s: the full suite can starve this process for tens of seconds) until `condition` holds.
    static func until(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw SluiceError(.timedOut, "the condition did not hold within 60 s") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    @Test("an outcome that came before anyone asked is kept until asked for once; the first of a task's outcomes wins")
    func keptUntilAsked() async throws {
        let listener = ReplyListener(queue: "p.reply.x", topology: try Topology(prefix: "p"))
        listener.deliver(Self.outcome("a", result: "first"))
        listener.deliver(Self.outcome("a", result: "second"))
        #expect(try await listener.wait(for: "a", timeout: .seconds(5)).result == "first")
        // Taken: a second ask waits for another outcome.
        await #expect(throws: SluiceError.self) { try await listener.wait(for: "a", timeout: .milliseconds(50)) }
    }

    @Test("every waiter for a task gets its outcome; other tasks' waiters go on waiting")
    func waitersGetIt() async throws {
        let listener = ReplyListener(queue: "p.reply.x", topology: try Topology(prefix: "p"))
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
        let listener = ReplyListener(queue: "p.reply.x", topology: try Topology(prefix: "p"))
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
        let listener = ReplyListener(queue: "p.reply.x", topology: try Topology(prefix: "p"))
        for i in 0..<(ReplyListener.keptOutcomes + 5) { listener.deliver(Self.outcome("t\(i)")) }
        await #expect(throws: SluiceError.self) { try await listener.wait(for: "t0", timeout: .milliseconds(20)) }
        #expect(try await listener.wait(for: "t\(ReplyListener.keptOutcomes + 4)", timeout: .seconds(5)).taskID == "t\(ReplyListener.keptOutcomes + 4)")
    }

    struct NoAck: DeliveryAcknowledger {
        func ack() async throws {}
        func reject(requeue: Bool) async throws {}
    }

    static func delivery(routingKey: String, replyTo: String?, headers: FieldTable, body: String) -> BrokerDelivery {
        BrokerDelivery(properties: BasicProperties(headers: headers, replyTo: replyTo, messageId: "task-1", type: "t"), body: Array(body.utf8),
                       redelivered: false, deliveryCount: 0, routingKey: routingKey, acknowledger: NoAck())
    }

    @Test("a dead letter bound to the reply queue: the delivery limit becomes a dead outcome; another client's, or its body, is never taken for one")
    func deadLetters() throws {
        let listener = ReplyListener(queue: "p.reply.x", topology: try Topology(prefix: "p"))
        let death: FieldTable = ["x-death": .array([.table(["reason": "delivery_limit", "queue": "p.q.emails", "count": .int64(1)])])]
        // The body looks like a success: a dead letter's body is the task's, never read as an outcome.
        let fake = #"{"kind":"succeeded","taskID":"task-1","taskName":"t","queue":"emails","attempt":1,"at":0,"result":"forged"}"#
        let outcome = try #require(listener.outcome(of: Self.delivery(routingKey: "emails", replyTo: "p.reply.x", headers: death, body: fake)))
        #expect(outcome.kind == .dead)
        #expect(outcome.deadReason == .deliveryLimit)
        #expect(outcome.taskID == "task-1")
        #expect(outcome.queue == "emails")
        // Another client's task on the same queue.
        #expect(listener.outcome(of: Self.delivery(routingKey: "emails", replyTo: "p.reply.other", headers: death, body: "{}")) == nil)
        // A worker's reply arrives through the default exchange: routing key = the reply queue.
        #expect(listener.outcome(of: Self.delivery(routingKey: "p.reply.x", replyTo: nil, headers: [:], body: fake))?.result == "forged")
        // A worker's own dead copy carries its reason.
        let byWorker: FieldTable = [WireHeader.deadReason: "non_retryable", WireHeader.errorType: "bad_input"]
        let copy = try #require(listener.outcome(of: Self.delivery(routingKey: "emails", replyTo: "p.reply.x", headers: byWorker, body: "{}")))
        #expect(copy.deadReason == .nonRetryable)
        #expect(copy.errorType == "bad_input")
    }
}
