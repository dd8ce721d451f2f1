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
        // The next attempt meets the checks a retry copy would (deadline, revocation, admission).
        guard case .admit(let admitted) = m.retryDue(now: T.now) else { Issue.record("no admission of the retry"); return }
        #expect(admitted.attempt == 2)
        guard case .run(let second, _, _) = m.admitted(.run) else { Issue.record("no second run"); return }
        #expect(second.attempt == 2 && second.id == "t-1")
        // Attempt 2 fails: again in place; attempt 3 (the last of 3) is dead-lettered.
        _ = m.handlerFinished(.failure(TaskFailure("again")), milliseconds: 1, now: T.now, jitter: 0)
        guard case .retryInPlace = m.eventSent() else { Issue.record("no second wait"); return }
        _ = m.retryDue(now: T.now)
        guard case .run(let third, _, _) = m.admitted(.run) else { Issue.record("no third run"); return }
        #expect(third.attempt == 3)
        let copy = T.published(m.handlerFinished(.failure(TaskFailure("last")), milliseconds: 1, now: T.now, jitter: 0))
        #expect(copy?.exchange == T.topology.deadExchange)
        #expect(T.deadReason(copy) == "max_attempts")
        #expect(copy?.properties.headers?[WireHeader.attempt]?.intValue == 3)
    }

    @Test("a revocation with terminate during the backoff dead-letters the task as revoked; a deadline passed meanwhile too")
    func revokedOrExpiredDuringBackoff() throws {
        var m = T.machine(T.task())
        m.retriesInPlace = true
        m.eventWanted = { _ in false }
        _ = T.toHandler(&m)
        _ = m.handlerFinished(.failure(TaskFailure("x")), milliseconds: 1, now: T.now, jitter: 0)
        #expect(m.taskWaitingToRetry?.attempt == 2)
        let copy = T.published(m.retryRevoked(TaskRevoked(at: nil, reason: "no longer wanted")))
        #expect(T.deadReason(copy) == "revoked")

        var late = T.machine(T.task(deadline: T.now.addingTimeInterval(1)))
        late.retriesInPlace = true
        late.eventWanted = { _ in false }
        _ = T.toHandler(&late)
        _ = late.handlerFinished(.failure(TaskFailure("x")), milliseconds: 1, now: T.now, jitter: 0)
        let expired = T.published(late.retryDue(now: T.now.addingTimeInterval(5)))
        #expect(T.deadReason(expired) == "deadline_expired")
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
        _ = m.admitted(.run)
        guard case .ack(.succeeded(task: "emails.send")) = m.handlerFinished(.success(nil), milliseconds: 1, now: T.now, jitter: 0) else {
            Issue.record("no ack"); return
        }
    }

    @Test("an ordered task is published to its key's partition (FNV-1a of the key, modulo 16); names and keys are checked")
    func routing() throws {
        let topology = T.topology
        var task = T.task()
        task.orderKey = "customer-42"
        let message = topology.message(for: task, now: T.now)
        // The documented hash, as any language computes it: FNV-1a 32 of "customer-42" is 14 modulo 16.
        #expect(Topology.orderPartition(ofKey: "customer-42") == 14)
        #expect(Topology.orderPartition(ofKey: "a") == 12)
        #expect(message.exchange == "unit.ordered" && message.routingKey == "emails.14")
        #expect(message.properties.headers?[WireHeader.orderKey]?.stringValue == "customer-42")
        let decoded = try TaskEnvelope.decode(properties: message.properties, body: message.body, queue: "emails")
        #expect(decoded.orderKey == "customer-42")
        #expect(topology.orderPartitionQueue("emails", 3) == "unit.order.emails.3")
        #expect(topology.orderPartition(fromQueue: "unit.order.emails.v2.15")! == ("emails.v2", 15))
        #expect(topology.orderPartition(fromQueue: "unit.q.emails") == nil)
        #expect(topology.orderPartition(fromQueue: "unit.order.emails.16") == nil)
        #expect(throws: SluiceError.self) { try Topology.validateOrderKey("") }
        #expect(throws: SluiceError.self) { try Topology.validateOrderKey(String(repeating: "k", count: 256)) }
    }
}
