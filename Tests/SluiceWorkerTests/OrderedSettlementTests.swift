import Foundation
import SluiceCore
import SluiceWire
@testable import SluiceWorker
import Testing

/// Ordered partitions retry in place: no copy through the delay ladder.
@Suite("Settlement of ordered tasks: retries in place")
struct OrderedSettlementTests {
    typealias T = SettlementStateMachineTests

    @Test("a failure with attempts left: the retrying report, a wait holding the delivery, the next attempt; the last is dead")
    func retryInPlace() throws {
        var m = T.machine(T.task())
        m.retriesInPlace = true
        _ = T.toHandler(&m)
        let report = m.handlerFinished(.failure(TaskFailure(kind: "smtp", "down")), milliseconds: 1, now: T.now, jitter: 0)
        guard case .publishEvent = report else { Issue.record("no report first: \(report)"); return }
        let event = try T.event(report)
        #expect(event.kind == .retrying && event.errorType == "smtp" && event.attempt == 1)
        guard case .retryInPlace(let wait) = m.eventSent() else { Issue.record("no wait in place"); return }
        #expect(wait > 0)
        #expect(m.taskName == "emails.send")
        guard case .run(let second, nil, nil) = m.retryDue(now: T.now) else { Issue.record("no second run"); return }
        #expect(second.attempt == 2 && second.id == "t-1")
        // Attempt 2 fails: again in place; attempt 3 (the last of 3) is dead-lettered.
        _ = m.handlerFinished(.failure(TaskFailure("again")), milliseconds: 1, now: T.now, jitter: 0)
        guard case .retryInPlace = m.eventSent() else { Issue.record("no second wait"); return }
        guard case .run(let third, _, _) = m.retryDue(now: T.now) else { Issue.record("no third run"); return }
        #expect(third.attempt == 3)
        let copy = T.published(m.handlerFinished(.failure(TaskFailure("last")), milliseconds: 1, now: T.now, jitter: 0))
        #expect(copy?.exchange == T.topology.deadExchange)
        #expect(T.deadReason(copy) == "max_attempts")
        #expect(copy?.properties.headers?[WireHeader.attempt]?.intValue == 3)
    }

    @Test("success after an in-place retry is acknowledged once, as any success")
    func successAfterRetry() throws {
        var m = T.machine(T.task())
        m.retriesInPlace = true
        m.eventWanted = { _ in false }  // nobody listens: the retrying report is skipped too
        _ = T.toHandler(&m)
        guard case .retryInPlace = m.handlerFinished(.failure(TaskFailure("x")), milliseconds: 1, now: T.now, jitter: 0) else {
            Issue.record("no wait in place"); return
        }
        _ = m.retryDue(now: T.now)
        guard case .ack(.succeeded(task: "emails.send")) = m.handlerFinished(.success(nil), milliseconds: 1, now: T.now, jitter: 0) else {
            Issue.record("no ack"); return
        }
    }

    @Test("an ordered task is published to its queue's ordered exchange, routed by its key; names and keys are checked")
    func routing() throws {
        let topology = T.topology
        var task = T.task()
        task.orderKey = "customer-42"
        let message = topology.message(for: task, now: T.now)
        #expect(message.exchange == "unit.ordered.emails" && message.routingKey == "customer-42")
        #expect(message.properties.headers?[WireHeader.orderKey]?.stringValue == "customer-42")
        let decoded = try TaskEnvelope.decode(properties: message.properties, body: message.body, queue: "emails")
        #expect(decoded.orderKey == "customer-42")
        #expect(topology.orderPartitionQueue("emails", 3) == "unit.order.emails.3")
        #expect(topology.orderPartition(fromQueue: "unit.order.emails.v2.15")! == ("emails.v2", 15))
        #expect(topology.orderPartition(fromQueue: "unit.q.emails") == nil)
        #expect(throws: SluiceError.self) { try Topology.validateOrderKey("") }
        #expect(throws: SluiceError.self) { try Topology.validateOrderKey(String(repeating: "k", count: 256)) }
    }
}
