import Foundation
@testable import SluiceCore
import SluiceWire
import Testing

@Suite("Wire format")
struct TaskEnvelopeTests {
    @Test("every field survives encode → decode")
    func roundTrip() throws {
        let task = TaskEnvelope(
            id: "t-1", name: "emails.send", queue: "emails", arguments: Array(#"{"to":"a@b.c"}"#.utf8), attempt: 3,
            maxAttempts: 7, retryPolicy: RetryPolicy(baseMilliseconds: 250, factor: 3, capMilliseconds: 9000, jitter: 0.1),
            notBefore: Date(epochMilliseconds: 1_800_000_000_123), deadline: Date(epochMilliseconds: 1_800_000_900_000),
            idempotencyKey: "order-9", workflowRunID: "run-1", workflowStep: "send", traceparent: "00-abc-def-01",
            enqueuedAt: Date(epochMilliseconds: 1_799_999_999_000), otherHeaders: ["x-custom": "kept"])
        let (properties, body) = task.encode()
        #expect(properties.messageId == "t-1")
        #expect(properties.type == "emails.send")
        #expect(properties.contentType == "application/json")
        #expect(properties.deliveryMode == 2)
        #expect(properties.correlationId == "run-1")
        #expect(properties.headers?[WireHeader.attempt]?.intValue == 3)
        let decoded = try TaskEnvelope.decode(properties: properties, body: body, queue: "emails")
        var expected = task
        expected.retryPolicy?.maxAttempts = RetryPolicy().maxAttempts  // the header carries backoff only
        #expect(decoded == expected)
    }

    @Test("a first attempt carries no header a reader can infer")
    func inferredHeadersLeftOut() throws {
        let task = TaskEnvelope(id: "t-2", name: "emails.send", queue: "emails", arguments: Array("{}".utf8),
                                enqueuedAt: Date(epochMilliseconds: 1_799_999_999_000))
        let (properties, body) = task.encode()
        // Version 1, attempt 1 and the queue consumed from are what their absence means.
        #expect(properties.headers?.map(\.key) == [WireHeader.enqueuedAt])
        let decoded = try TaskEnvelope.decode(properties: properties, body: body, queue: "emails")
        #expect(decoded == task)
        #expect(decoded.attempt == 1)
        // Its retry says which attempt it is.
        var retry = task
        retry.attempt = 2
        #expect(retry.encode().properties.headers?[WireHeader.attempt]?.intValue == 2)
        // Messages of earlier producers, with all three headers, still read the same.
        var older = properties
        older.headers?[WireHeader.version] = 1
        older.headers?[WireHeader.queue] = "emails"
        older.headers?[WireHeader.attempt] = 1
        #expect(try TaskEnvelope.decode(properties: older, body: body, queue: "emails") == task)
        // The envelope's fields decide them, whatever its other headers say.
        var handBuilt = task
        handBuilt.otherHeaders = [WireHeader.version: 2, WireHeader.queue: "other", WireHeader.attempt: 3]
        #expect(handBuilt.encode().properties.headers?.map(\.key) == [WireHeader.enqueuedAt])
    }

    @Test("hostile numbers in headers neither trap nor hang")
    func hostileNumbers() throws {
        let headers: FieldTable = [
            WireHeader.attempt: .int64(Int64.max - 1), WireHeader.maxAttempts: .int64(Int64.max),
            WireHeader.notBefore: .int64(Int64.max), WireHeader.deadline: .int64(Int64.min),
            WireHeader.retry: ["base-ms": .int64(Int64.max), "factor": 1.0, "max-ms": .int64(Int64.max), "jitter": .double(.nan)],
        ]
        let task = try TaskEnvelope.decode(properties: BasicProperties(headers: headers, type: "x"), body: Array("{}".utf8), queue: "q")
        let policy = try #require(task.retryPolicy)
        #expect(policy.delayMilliseconds(afterAttempt: task.attempt, unit: 0) == RetryPolicy.longestDelay)
        let message = try Topology().message(for: task)
        #expect(message.exchange.hasPrefix("sluice.delay."))
        _ = task.encode()
    }

    @Test("new ids are distinct version-4 UUIDs")
    func ids() {
        let ids = (0..<1000).map { _ in TaskEnvelope.newID() }
        #expect(Set(ids).count == 1000)
        for id in ids.prefix(20) {
            let uuid = UUID(uuidString: id)
            #expect(uuid != nil)
            #expect(uuid?.uuidString.lowercased() == id)
            #expect(Array(id)[14] == "4")
        }
    }

    @Test("a minimal foreign message decodes with defaults")
    func minimal() throws {
        let decoded = try TaskEnvelope.decode(properties: BasicProperties(type: "x"), body: Array("{}".utf8), queue: "q")
        #expect(decoded.name == "x")
        #expect(decoded.queue == "q")
        #expect(decoded.attempt == 1)
        #expect(!decoded.id.isEmpty)
        // amqp-publish sends the name as a header and integers as strings.
        let viaHeaders = try TaskEnvelope.decode(
            properties: BasicProperties(headers: [WireHeader.task: "y", WireHeader.version: "1", WireHeader.attempt: "2"]),
            body: Array("[1]".utf8), queue: "q")
        #expect(viaHeaders.name == "y")
        #expect(viaHeaders.attempt == 2)
    }

    @Test("bad messages fail with their reason", arguments: [
        (BasicProperties(type: "x"), "not json", DeadReason.undecodable),
        (BasicProperties(type: "x"), "", DeadReason.undecodable),
        (BasicProperties(contentType: "text/plain", type: "x"), "{}", DeadReason.undecodable),
        (BasicProperties(), "{}", DeadReason.invalidEnvelope),
        (BasicProperties(headers: [WireHeader.version: 2], type: "x"), "{}", DeadReason.unsupportedVersion),
        (BasicProperties(headers: [WireHeader.attempt: 0], type: "x"), "{}", DeadReason.invalidEnvelope),
        (BasicProperties(headers: [WireHeader.attempt: "many"], type: "x"), "{}", DeadReason.invalidEnvelope),
        (BasicProperties(headers: [WireHeader.retry: "fast"], type: "x"), "{}", DeadReason.invalidEnvelope),
    ])
    func failures(properties: BasicProperties, body: String, reason: DeadReason) {
        let error = #expect(throws: DecodeFailure.self) {
            try TaskEnvelope.decode(properties: properties, body: Array(body.utf8), queue: "q")
        }
        #expect(error?.reason == reason)
    }
}

@Suite("Retry policy and topology")
struct RetryAndTopologyTests {
    @Test("delays grow by the factor up to the cap; jitter only shortens")
    func delays() {
        let p = RetryPolicy(maxAttempts: 10, baseMilliseconds: 1000, factor: 2, capMilliseconds: 5000, jitter: 0.5)
        #expect((1...5).map { p.delayMilliseconds(afterAttempt: $0, unit: 0) } == [1000, 2000, 4000, 5000, 5000])
        #expect(p.delayMilliseconds(afterAttempt: 1, unit: 0.5) == 750)
    }

    @Test("decisions: retry, then dead after max attempts; non-retryable kinds die at once")
    func decisions() {
        let p = RetryPolicy(maxAttempts: 3, baseMilliseconds: 100, jitter: 0, nonRetryable: ["bad_input"])
        #expect(p.decision(afterAttempt: 1, errorKind: "io") == .retry(afterMilliseconds: 100))
        #expect(p.decision(afterAttempt: 2, errorKind: "io") == .retry(afterMilliseconds: 200))
        #expect(p.decision(afterAttempt: 3, errorKind: "io") == .dead(.maxAttempts))
        #expect(p.decision(afterAttempt: 1, errorKind: "bad_input") == .dead(.nonRetryable))
        #expect(p.decision(afterAttempt: 1, errorKind: "io", maxAttemptsOverride: 1) == .dead(.maxAttempts))
    }

    @Test("names come from the prefix; two prefixes share nothing")
    func names() throws {
        let a = try Topology(prefix: "a"), b = try Topology(prefix: "b")
        #expect(a.workQueue("emails") == "a.q.emails")
        #expect(a.deadQueue("emails") == "a.dead.emails")
        #expect(a.tasksExchange == "a.tasks")
        #expect(a.queueName(fromWorkQueue: "a.q.emails") == "emails")
        let namesA = Set(a.exchanges.map(\.name) + a.delayQueues.map(\.queue.name) + [a.workQueue("q"), a.deadQueue("q")])
        let namesB = Set(b.exchanges.map(\.name) + b.delayQueues.map(\.queue.name) + [b.workQueue("q"), b.deadQueue("q")])
        #expect(namesA.isDisjoint(with: namesB))
        let work = a.workQueueDeclaration("emails")
        #expect(work.arguments["x-queue-type"] == "quorum")
        #expect(work.arguments["x-dead-letter-exchange"]?.stringValue == "a.dead")
        #expect(work.arguments["x-dead-letter-strategy"] == "at-least-once")
        #expect(throws: SluiceError.self) { try Topology(prefix: "bad prefix") }
        #expect(throws: SluiceError.self) { try Topology.validateQueue("has/slash") }
    }

    @Test("a queue name is 1-100 ASCII letters, digits, '-', '_' or '.', with an optional level; anything else is refused")
    func queueNames() throws {
        for good in ["q", "Emails_2.x-y", String(repeating: "a", count: 100), String(repeating: "a", count: 100) + "~high"] {
            try Topology.validateQueue(good)
        }
        for bad in ["", String(repeating: "a", count: 101), "caf\u{E9}", "e\u{301}", "\u{FF51}", "a b", "a\u{301C}high", "~"] {
            #expect(throws: SluiceError.self, "\(bad)") { try Topology.validateQueue(bad) }
        }
        #expect(Topology.splitLevel("caf\u{E9}~low") == ("caf\u{E9}", .low), "the level is found after a multibyte character")
    }

    @Test("every quorum queue Sluice declares asks for its replicas (3 by default); nil leaves it to the broker")
    func replicas() throws {
        let t = try Topology(prefix: "r")
        let quorum = [t.workQueueDeclaration("q"), t.deadQueueDeclaration("q"), t.coordinatorQueueDeclaration,
                      t.coordinatorDeadQueueDeclaration, t.coordinatorQueueDeclaration(partition: 1, of: 4),
                      t.isolationQueueDeclaration("q")] + t.delayQueues.map(\.queue)
        #expect(quorum.allSatisfy { $0.arguments["x-queue-type"] == "quorum" })
        #expect(quorum.allSatisfy { $0.arguments[Topology.replicasArgument] == .int64(3) })
        let five = try Topology(prefix: "r", replicas: 5)
        #expect(five.workQueueDeclaration("q").arguments[Topology.replicasArgument] == .int64(5))
        let brokers = try Topology(prefix: "r", replicas: nil)
        #expect(brokers.workQueueDeclaration("q").arguments[Topology.replicasArgument] == nil)
        #expect(throws: SluiceError.self) { try Topology(replicas: 0) }
    }

    @Test("a delay picks the longest tier that fits, so long waits hop")
    func tiers() throws {
        let t = try Topology()
        #expect(t.delayTier(for: 100) == 250)
        #expect(t.delayTier(for: 1500) == 1000)
        #expect(t.delayTier(for: 45_000) == 30_000)
        #expect(t.delayTier(for: 86_400_000) == 3_600_000)
        let now = Date()
        let later = TaskEnvelope(name: "x", queue: "q", arguments: Array("{}".utf8), notBefore: now.addingTimeInterval(45))
        #expect(t.message(for: later, now: now).exchange == t.delayExchange(30_000))
        #expect(t.message(for: later, now: now).routingKey == "q")
        let due = TaskEnvelope(name: "x", queue: "q", arguments: Array("{}".utf8), notBefore: now)
        #expect(t.message(for: due, now: now).exchange == t.tasksExchange)
    }
}
