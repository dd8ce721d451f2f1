@testable import SluiceAMQP
import SluiceWire
import Testing

@Suite("Reconnect backoff and topology recording")
struct RecoveryLogicTests {
    @Test("backoff grows by the factor, stops at the cap, and jitter only shortens")
    func backoff() {
        var b = ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(1), factor: 2, jitter: 0.5)
        let noJitter = (0..<6).map { _ in b.nextDelay(unit: 0) }
        #expect(noJitter == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1)])
        b.reset()
        #expect(b.nextDelay(unit: 0.999) >= .milliseconds(50))
        #expect(b.nextDelay(unit: 0.5) == .milliseconds(150))
        b.reset()
        for _ in 0..<100 {
            let d = b.nextDelay()
            #expect(d <= .seconds(1) && d >= .zero)
        }
    }

    @Test("topology replays in first-declared order; deletes remove dependants")
    func topology() {
        var t = TopologyRecorder()
        let x = ExchangeDeclaration(name: "x")
        let q1 = QueueDeclaration(name: "q1")
        let q2 = QueueDeclaration.quorum("q2")
        let b1 = TopologyRecorder.Binding(queue: "q1", exchange: "x", routingKey: "a", arguments: [:])
        let b2 = TopologyRecorder.Binding(queue: "q2", exchange: "x", routingKey: "b", arguments: [:])
        t.record(.exchange(x))
        t.record(.queue(q1))
        t.record(.binding(b1))
        t.record(.queue(q2))
        t.record(.binding(b2))
        t.record(.queue(QueueDeclaration(name: "q1", arguments: ["x-max-length": 5])))  // re-declared: replaced in place
        t.record(.binding(b1))  // duplicate binding: once
        #expect(t.declarations.count == 5)
        #expect(t.declarations[1] == .queue(QueueDeclaration(name: "q1", arguments: ["x-max-length": 5])))
        t.deleteQueue("q1")
        #expect(t.declarations == [.exchange(x), .queue(q2), .binding(b2)])
        t.unbind(b2)
        #expect(t.declarations == [.exchange(x), .queue(q2)])
        t.record(.binding(b2))
        t.deleteExchange("x")
        #expect(t.declarations == [.queue(q2)])
    }

    @Test("a pending result resolved before anyone waits is kept; cancellation wins once")
    func pendingResult() async throws {
        let early = PendingResult<Int>()
        early.succeed(7)
        early.succeed(8)
        let value = try await withCheckedThrowingContinuation { early.install($0) }
        #expect(value == 7)

        let cancelled = PendingResult<Int>()
        let task = Task {
            try await withCheckedThrowingContinuation { cancelled.install($0) }
        }
        cancelled.cancel()
        cancelled.succeed(1)  // too late: ignored
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        #expect(cancelled.isSettled)
    }
}
