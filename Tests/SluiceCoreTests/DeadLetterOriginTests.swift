import SluiceCore
import SluiceWire
import Testing

@Suite("Where a dead letter came from")
struct DeadLetterOriginTests {
    @Test("the coordinator's dead-letter watch trusts the broker's x-death record, not the message's own headers")
    func deadLetterOrigin() throws {
        let t = try Topology(prefix: "p")
        func death(_ queue: String, _ reason: String) -> FieldValue { .array([.table(["queue": .string(queue), "reason": .string(reason)])]) }
        #expect(t.deadLetterOrigin(["x-death": death("p.q.wf", "delivery_limit")]) == .deliveryLimit)
        // A producer made its message expire and wrote its own reason: not a step outcome.
        if case .other = t.deadLetterOrigin(["x-death": death("p.q.wf", "expired"), WireHeader.deadReason: "max_attempts"]) {} else {
            Issue.record("an expired message counted as a step outcome")
        }
        if case .other = t.deadLetterOrigin(["x-death": death("other.q.wf", "delivery_limit")]) {} else {
            Issue.record("another prefix's queue counted")
        }
        // A worker dead-lettered a task that had waited in the delay ladder.
        #expect(t.deadLetterOrigin(["x-death": death("p.delay.1000", "expired"), WireHeader.deadReason: "max_attempts"]) == .worker(.maxAttempts))
        #expect(t.deadLetterOrigin([WireHeader.deadReason: "unknown_task"]) == .worker(.unknownTask))
        if case .other = t.deadLetterOrigin([:]) {} else { Issue.record("a reasonless dead letter counted") }
    }
}
