import Foundation
import SluiceCore
import SluiceWire
@testable import SluiceWorker
import Testing

/// Replies to a producer waiting for a task's outcome (`reply_to`), decided
/// by the settlement machine: only final outcomes answer, a success's reply
/// is confirmed before the ack, and only reply addresses are answered.
@Suite("Settlement state machine: replies")
struct SettlementRepliesTests {
    typealias T = SettlementStateMachineTests
    static let replyQueue = T.topology.replyQueue("client-1")

    static func task(attempt: Int = 1, replyTo: String? = replyQueue) -> TaskEnvelope {
        var task = T.task(attempt: attempt)
        task.replyTo = replyTo
        return task
    }

    @Test("success with a listener: the event, then the reply, both confirmed before the ack")
    func successWithListener() throws {
        var m = T.machine(Self.task())
        _ = T.toHandler(&m)
        let event = T.published(m.handlerFinished(.success(Array("42".utf8)), milliseconds: 1, now: T.now, jitter: 0))
        #expect(event?.exchange == T.topology.eventsExchange)
        let reply = try #require(T.published(m.published()))
        #expect(reply.exchange == "")
        #expect(reply.routingKey == Self.replyQueue)
        #expect(reply.properties.correlationId == "t-1")
        #expect(reply.properties.type == Topology.replyType)
        #expect(reply.mandatory)
        let outcome = try TaskEvent.decode(reply.body)
        #expect(outcome.kind == .succeeded)
        #expect(outcome.result == "42")
        guard case .ack(.succeeded) = m.published() else { Issue.record("no ack after the reply"); return }
    }

    @Test("success nobody listens to but a producer waits for: the reply alone, confirmed before the ack")
    func successReplyOnly() throws {
        var m = T.machine(Self.task())
        m.eventWanted = { _ in false }
        _ = T.toHandler(&m)
        let reply = T.published(m.handlerFinished(.success(nil), milliseconds: 1, now: T.now, jitter: 0))
        #expect(reply?.routingKey == Self.replyQueue)
        guard case .ack(.succeeded) = m.published() else { Issue.record("no ack after the reply"); return }
    }

    @Test("a retry does not answer, and its copy keeps the reply address for the attempt that will")
    func retryKeepsAddress() throws {
        var m = T.machine(Self.task())
        _ = T.toHandler(&m)
        let copy = try #require(T.published(m.handlerFinished(.failure(TaskFailure("down")), milliseconds: 1, now: T.now, jitter: 0)))
        #expect(copy.properties.replyTo == Self.replyQueue)
        let next = try TaskEnvelope.decode(properties: copy.properties, body: copy.body, queue: "emails")
        #expect(next.replyTo == Self.replyQueue)
        guard case .publishEvent(let report) = m.published() else { Issue.record("no retrying report"); return }
        #expect(report.exchange == T.topology.eventsExchange, "a report, not a reply")
        guard case .ack(.retried) = m.eventSent() else { Issue.record("no ack"); return }
    }

    @Test("dead: the dead copy first, then the reply with the reason, then the dead event")
    func deadAnswers() throws {
        var m = T.machine(Self.task(attempt: 3))
        _ = T.toHandler(&m)
        let copy = T.published(m.handlerFinished(.failure(TaskFailure(kind: "smtp", "down")), milliseconds: 1, now: T.now, jitter: 0))
        #expect(copy?.exchange == T.topology.deadExchange)
        guard case .publishEvent(let reply) = m.published() else { Issue.record("no reply"); return }
        #expect(reply.routingKey == Self.replyQueue)
        let outcome = try TaskEvent.decode(reply.body)
        #expect(outcome.kind == .dead)
        #expect(outcome.deadReason == .maxAttempts)
        #expect(outcome.errorType == "smtp")
        #expect(outcome.errorMessage == "down")
        guard case .publishEvent(let event) = m.eventSent() else { Issue.record("no dead event"); return }
        #expect(event.exchange == T.topology.eventsExchange)
        guard case .ack(.dead(_, "t-1", .maxAttempts, _)) = m.eventSent() else { Issue.record("no ack"); return }
    }

    @Test("a message that is not a task still gets its reply, from its properties")
    func undecodableAnswers() throws {
        let properties = BasicProperties(replyTo: Self.replyQueue, messageId: "m-1", type: "emails.send")
        var m = SettlementStateMachine(settings: T.settings(), queue: "emails", properties: properties, body: Array("not json".utf8))
        let copy = T.published(m.received(now: T.now))
        #expect(T.deadReason(copy) == "undecodable")
        guard case .publishEvent(let reply) = m.published() else { Issue.record("no reply"); return }
        let outcome = try TaskEvent.decode(reply.body)
        #expect(outcome.taskID == "m-1")
        #expect(outcome.deadReason == .undecodable)
    }

    @Test("only reply addresses are answered: a work queue, another prefix's queue or junk in reply_to gets nothing")
    func foreignAddressesIgnored() throws {
        // "unit.reply.q.emails" is the work queue of a deployment whose prefix is "unit.reply".
        for address in ["unit.q.emails", "unit.coordinator.p0", "other.reply.x", "unit.reply.", "unit.reply.q.emails",
                        "unit.reply.a b", "unit.reply." + String(repeating: "x", count: 65), "amq.rabbitmq.reply-to", ""] {
            var m = T.machine(Self.task(replyTo: address))
            m.eventWanted = { _ in false }
            _ = T.toHandler(&m)
            guard case .ack(.succeeded) = m.handlerFinished(.success(nil), milliseconds: 1, now: T.now, jitter: 0) else {
                Issue.record("a reply to \(address)")
                continue
            }
        }
        #expect(T.topology.isReplyAddress("amq.rabbitmq.reply-to.g1h2AA5yZXBseUAx"))
        #expect(T.topology.isReplyAddress(Self.replyQueue))
        #expect(T.topology.isReplyQueue("unit.reply.0f1e-Ab_9"))
        #expect(!T.topology.isReplyQueue("amq.rabbitmq.reply-to.g1h2AA5yZXBseUAx"), "a client may not name one for TaskClient")
    }

    @Test("a success's reply the broker refuses (over a limit, nacked, unroutable): logged, and the success acked (the handler does not run again)")
    func refusedReply() throws {
        for code in [AMQPError.Code.unencodable, .publishNacked, .unroutable] {
            var m = T.machine(Self.task())
            m.eventWanted = { _ in false }
            _ = T.toHandler(&m)
            _ = T.published(m.handlerFinished(.success(nil), milliseconds: 1, now: T.now, jitter: 0))
            guard case .log(.replyRefused) = m.publishRefused(AMQPError(code, operation: "publish", message: "refused")) else {
                Issue.record("\(code): not logged")
                continue
            }
            guard case .ack(.succeeded) = m.logged() else { Issue.record("\(code): no ack"); continue }
        }
    }

    @Test("a nacked outcome that is not a reply (the success event, a retry copy) fails the delivery, which comes back")
    func nackedOutcomeFails() throws {
        let nack = AMQPError(.publishNacked, operation: "publish", message: "nacked")
        var success = T.machine(Self.task())
        _ = T.toHandler(&success)
        _ = T.published(success.handlerFinished(.success(nil), milliseconds: 1, now: T.now, jitter: 0))
        guard case .fail = success.publishRefused(nack) else { Issue.record("a nacked success event was not a failure"); return }
        var retry = T.machine(Self.task())
        _ = T.toHandler(&retry)
        _ = T.published(retry.handlerFinished(.failure(TaskFailure("down")), milliseconds: 1, now: T.now, jitter: 0))
        guard case .fail = retry.publishRefused(nack) else { Issue.record("a nacked retry copy was not a failure"); return }
    }
}
