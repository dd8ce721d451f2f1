#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
public import SluiceWire

/// A task as it travels through the broker: identity, arguments and protocol
/// metadata. The wire format (docs/wire-format.md) maps it onto AMQP
/// properties and `sluice-*` headers; the body is the JSON arguments.
public struct TaskEnvelope: Sendable, Hashable, CustomReflectable {
    /// The wire-format version this code writes and the newest it reads.
    public static let protocolVersion = 1

    // The fields live in one box, copied on write: a value that passes
    // through many hands per message is then copied with one reference
    // count instead of one per field.
    private struct Fields: Sendable, Hashable {
        var id: String
        var name: String
        var queue: String
        var arguments: [UInt8]
        var attempt: Int
        var maxAttempts: Int?
        var retryPolicy: RetryPolicy?
        var notBefore: Date?
        var deadline: Date?
        var idempotencyKey: String?
        var workflowRunID: String?
        var workflowStep: String?
        var traceparent: String?
        var enqueuedAt: Date?
        var replyTo: String?
        var priority: TaskPriority
        var track: Bool
        var otherHeaders: FieldTable
    }

    /// `@unchecked`: `fields` is written only through ``mutate(_:)``, after
    /// making the box unique, so no two values ever share a box being written.
    private final class Box: @unchecked Sendable {
        var fields: Fields
        init(_ fields: Fields) { self.fields = fields }
    }

    private var box: Box

    private mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&box) { box = Box(box.fields) }
    }

    private mutating func mutate(_ change: (inout Fields) -> Void) {
        makeUnique()
        change(&box.fields)
    }

    public static func == (a: TaskEnvelope, b: TaskEnvelope) -> Bool { a.box === b.box || a.box.fields == b.box.fields }
    public func hash(into hasher: inout Hasher) { hasher.combine(box.fields) }

    /// Printed and inspected as its fields, not as the box.
    public var customMirror: Mirror { Mirror(self, children: Mirror(reflecting: box.fields).children, displayStyle: .struct) }

    /// Stable across retries and redeliveries (`message_id`).
    public var id: String {
        get { box.fields.id }
        set { mutate { $0.id = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.id
        }
    }

    /// The registered task name (`type`).
    public var name: String {
        get { box.fields.name }
        set { mutate { $0.name = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.name
        }
    }

    /// The queue the task belongs to (without prefix).
    public var queue: String {
        get { box.fields.queue }
        set { mutate { $0.queue = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.queue
        }
    }

    /// The JSON arguments (the message body).
    public var arguments: [UInt8] {
        get { box.fields.arguments }
        set { mutate { $0.arguments = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.arguments
        }
    }

    /// 1 for the first run, +1 per retry.
    public var attempt: Int {
        get { box.fields.attempt }
        set { mutate { $0.attempt = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.attempt
        }
    }

    /// Runs allowed in all; nil: the worker's policy decides.
    public var maxAttempts: Int? {
        get { box.fields.maxAttempts }
        set { mutate { $0.maxAttempts = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.maxAttempts
        }
    }

    /// Retry backoff overriding the worker's policy.
    public var retryPolicy: RetryPolicy? {
        get { box.fields.retryPolicy }
        set { mutate { $0.retryPolicy = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.retryPolicy
        }
    }

    /// Do not start before this time.
    public var notBefore: Date? {
        get { box.fields.notBefore }
        set { mutate { $0.notBefore = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.notBefore
        }
    }

    /// Dead-letter instead of starting after this time.
    public var deadline: Date? {
        get { box.fields.deadline }
        set { mutate { $0.deadline = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.deadline
        }
    }

    /// The caller's key for deduplicating side effects; defaults to the id.
    public var idempotencyKey: String? {
        get { box.fields.idempotencyKey }
        set { mutate { $0.idempotencyKey = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.idempotencyKey
        }
    }

    /// The workflow run this task is a step of (`correlation_id` too).
    public var workflowRunID: String? {
        get { box.fields.workflowRunID }
        set { mutate { $0.workflowRunID = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.workflowRunID
        }
    }

    /// The step id within that run.
    public var workflowStep: String? {
        get { box.fields.workflowStep }
        set { mutate { $0.workflowStep = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.workflowStep
        }
    }

    /// W3C trace context.
    public var traceparent: String? {
        get { box.fields.traceparent }
        set { mutate { $0.traceparent = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.traceparent
        }
    }

    /// When it was first enqueued; nil when the message said nothing
    /// (no `timestamp`, no `sluice-enqueued-at`): its wait is then unknown.
    public var enqueuedAt: Date? {
        get { box.fields.enqueuedAt }
        set { mutate { $0.enqueuedAt = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.enqueuedAt
        }
    }

    /// Where the worker sends the task's final outcome (`reply_to`): a
    /// producer's reply queue (``Topology/replyQueue(_:)``) or RabbitMQ's
    /// direct reply-to. Kept on retry copies; only the last attempt answers.
    public var replyTo: String? {
        get { box.fields.replyTo }
        set { mutate { $0.replyTo = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.replyTo
        }
    }

    /// The priority level the task is on (``TaskPriority``): it routes to
    /// ``Topology/levelName(_:_:)`` of its queue, and retries come back there.
    public var priority: TaskPriority {
        get { box.fields.priority }
        set { mutate { $0.priority = newValue } }
    }

    /// Whether the coordinator keeps this task's status (`sluice-track`):
    /// its events then go to ``Topology/trackEventRoutingKey(queue:kind:)``,
    /// and `started` is published for one still running 0.1 s after it started. Kept on retry copies.
    public var track: Bool {
        get { box.fields.track }
        set { mutate { $0.track = newValue } }
    }

    /// On a workflow step task: the bucket whose coordinator queue takes
    /// its outcomes packed with other steps' (``Topology/eventPackRoutingKey(bucket:kind:)``);
    /// nil when the coordinator asked for one event per message. Set by the
    /// coordinator, kept on retry copies; any value outside the buckets is ignored.
    public var eventPackBucket: Int? {
        get {
            guard workflowRunID != nil, let value = otherHeaders[WireHeader.eventPack]?.intValue,
                  (0..<Topology.stepEventBuckets).contains(value) else { return nil }
            return value
        }
        set { otherHeaders[WireHeader.eventPack] = newValue.map { .int64(Int64($0)) } }
    }

    /// The key whose tasks run one at a time in enqueue order (see
    /// ``Topology/orderedExchange(_:)``); nil for an unordered task.
    public var orderKey: String? {
        get { otherHeaders[WireHeader.orderKey]?.stringValue }
        set { otherHeaders[WireHeader.orderKey] = newValue.map { .string($0) } }
    }

    /// Headers this version does not interpret, kept on retries and dead copies.
    public var otherHeaders: FieldTable {
        get { box.fields.otherHeaders }
        set { mutate { $0.otherHeaders = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.otherHeaders
        }
    }

    /// A new task, attempt 1, enqueued now.
    public init(id: String = TaskEnvelope.newID(), name: String, queue: String, arguments: [UInt8], attempt: Int = 1,
                maxAttempts: Int? = nil, retryPolicy: RetryPolicy? = nil, notBefore: Date? = nil, deadline: Date? = nil,
                idempotencyKey: String? = nil, workflowRunID: String? = nil, workflowStep: String? = nil,
                traceparent: String? = nil, enqueuedAt: Date? = Date(), replyTo: String? = nil, priority: TaskPriority = .normal,
                track: Bool = false, otherHeaders: FieldTable = [:]) {
        box = Box(Fields(id: id, name: name, queue: queue, arguments: arguments, attempt: attempt, maxAttempts: maxAttempts, retryPolicy: retryPolicy, notBefore: notBefore, deadline: deadline, idempotencyKey: idempotencyKey, workflowRunID: workflowRunID, workflowStep: workflowStep, traceparent: traceparent, enqueuedAt: enqueuedAt, replyTo: replyTo, priority: priority, track: track, otherHeaders: otherHeaders))
    }

    /// A random task id: a version-4 UUID in lowercase (``UUIDText``).
    public static func newID() -> String { UUIDText.random() }

    /// The key a handler should use to make side effects idempotent.
    public var effectiveIdempotencyKey: String { idempotencyKey ?? id }
}

/// The header names of the wire format.
public enum WireHeader {
    public static let version = "sluice-version"
    /// The task name when the publisher cannot set the `type` property (amqp-publish).
    public static let task = "sluice-task"
    /// The task id when the publisher cannot set `message_id` (amqp-publish).
    public static let id = "sluice-id"
    public static let queue = "sluice-queue"
    public static let attempt = "sluice-attempt"
    public static let maxAttempts = "sluice-max-attempts"
    public static let retry = "sluice-retry"
    public static let notBefore = "sluice-not-before"
    public static let deadline = "sluice-deadline"
    public static let idempotencyKey = "sluice-idempotency-key"
    public static let workflowRun = "sluice-workflow-run"
    public static let workflowStep = "sluice-workflow-step"
    public static let enqueuedAt = "sluice-enqueued-at"
    public static let traceparent = "traceparent"
    /// The task's priority level, `high` or `low` (absent: normal). Informs;
    /// the routing key decides where a task goes (``Topology/levelName(_:_:)``).
    public static let priority = "sluice-priority"
    /// `1`: the coordinator keeps the task's status (``TaskEnvelope/track``).
    public static let track = "sluice-track"
    // On dead copies:
    public static let deadReason = "sluice-dead-reason"
    public static let errorType = "sluice-error-type"
    public static let errorMessage = "sluice-error-message"
    public static let deadAt = "sluice-dead-at"
    public static let deadBy = "sluice-dead-by"
    /// On a trimmed dead copy: how many of the original headers were dropped
    /// so that the copy fits a frame.
    public static let trimmedHeaders = "sluice-trimmed-headers"
    /// On a dead copy: the signature of its `dead` outcome (see ``EventSigner``).
    public static let signature = "sluice-signature"
    /// On a task with a unique key held until it finishes: its lock's queue
    /// and expiry (``UniqueLockTicket``), for the worker that finishes it
    /// to give the lock back. Kept on retry and dead copies, as any header
    /// this version does not interpret.
    public static let uniqueLock = "sluice-unique"
    /// On a task with strict order per key: the key (``TaskEnvelope/orderKey``).
    /// Kept on dead copies, so that a replay goes back to the key's partition.
    public static let orderKey = "sluice-order-key"
    /// On a step task: where its outcome events go packed (``TaskEnvelope/eventPackBucket``).
    public static let eventPack = "sluice-event-pack"
    /// On a step task: the coordinator's signature of its id, run and step
    /// (see ``EventSigner/stepSignature(taskID:runID:step:)``). Kept on
    /// retry copies, as any header this version does not interpret.
    public static let stepSignature = "sluice-step-signature"

    static let known: [String] = [version, task, id, queue, attempt, maxAttempts, retry, notBefore, deadline, idempotencyKey,
                                  workflowRun, workflowStep, enqueuedAt, traceparent, signature, priority, track]

    /// Whether `key` is one of ``known``. A scan, not a `Set`: every task's
    /// headers are looked up here, and hashing a key costs more than
    /// comparing it with fifteen short strings (most differ in length).
    static func isKnown(_ key: String) -> Bool {
        let count = key.utf8.count
        for name in known where name.utf8.count == count && name == key { return true }
        return false
    }
}

extension TaskEnvelope {
    /// The AMQP properties and body for this task.
    public func encode() -> (properties: BasicProperties, body: [UInt8]) {
        // Only what a reader cannot infer: the broker parses and stores every
        // header with each queue entry. An absent version is version 1, an
        // absent attempt is the first, and the queue is the one consumed from.
        var headers = otherHeaders
        // The envelope's own fields decide these, whatever its other headers say.
        headers[WireHeader.version] = nil
        headers[WireHeader.queue] = nil
        headers[WireHeader.attempt] = attempt > 1 ? .int64(Int64(attempt)) : nil
        if let enqueuedAt { headers[WireHeader.enqueuedAt] = .int64(enqueuedAt.epochMilliseconds) }
        if let maxAttempts { headers[WireHeader.maxAttempts] = .int64(Int64(maxAttempts)) }
        if let retryPolicy { headers[WireHeader.retry] = .table(retryPolicy.fieldTable) }
        if let notBefore { headers[WireHeader.notBefore] = .int64(notBefore.epochMilliseconds) }
        if let deadline { headers[WireHeader.deadline] = .int64(deadline.epochMilliseconds) }
        if let idempotencyKey { headers[WireHeader.idempotencyKey] = .string(idempotencyKey) }
        if let workflowRunID { headers[WireHeader.workflowRun] = .string(workflowRunID) }
        if let workflowStep { headers[WireHeader.workflowStep] = .string(workflowStep) }
        if let traceparent { headers[WireHeader.traceparent] = .string(traceparent) }
        if priority != .normal { headers[WireHeader.priority] = .string(priority.rawValue) }
        if track { headers[WireHeader.track] = .int64(1) }
        let properties = BasicProperties(
            contentType: "application/json", headers: headers, deliveryMode: 2, correlationId: workflowRunID,
            replyTo: replyTo, messageId: id, timestamp: enqueuedAt.map { UInt64(clamping: max(0, $0.epochMilliseconds / 1000)) }, type: name)
        return (properties, arguments)
    }

    /// The task a message names (`type`, or the `sluice-task` header), without decoding the rest.
    public static func taskName(_ properties: BasicProperties) -> String? {
        properties.type.flatMap { $0.isEmpty ? nil : $0 } ?? properties.headers?[WireHeader.task]?.stringValue
    }

    /// Reads a task from a message; `queue` is the queue it was consumed from,
    /// `priority` the level (nil: the `sluice-priority` header says, for a
    /// queue that holds every level, such as an isolation queue).
    /// Throws ``DecodeFailure`` saying why the message is not a task this
    /// version can run (the worker dead-letters it with that reason).
    public static func decode(properties: BasicProperties, body: [UInt8], queue: String,
                              priority: TaskPriority? = .normal) throws(DecodeFailure) -> TaskEnvelope {
        let headers = properties.headers ?? [:]
        // Integers may come as decimal strings: some tools (amqp-publish -H) only send strings.
        func integer(_ value: FieldValue) -> Int? { value.intValue ?? value.stringValue.flatMap { Int($0) } }
        if let version = headers[WireHeader.version] {
            guard let v = integer(version) else {
                throw DecodeFailure(.invalidEnvelope, "header \(WireHeader.version) is not an integer")
            }
            if v > protocolVersion || v < 1 {
                throw DecodeFailure(.unsupportedVersion, "protocol version \(v) is not supported (this worker reads up to \(protocolVersion))")
            }
        }
        guard let name = taskName(properties), !name.isEmpty else {
            throw DecodeFailure(.invalidEnvelope, "the message names no task (type property or \(WireHeader.task) header)")
        }
        if properties.contentType != nil && properties.contentType != "application/json" {
            throw DecodeFailure(.undecodable, "content type \(properties.contentType!) is not application/json")
        }
        if properties.contentEncoding != nil && properties.contentEncoding != "identity" && properties.contentEncoding != "utf-8" {
            throw DecodeFailure(.undecodable, "content encoding \(properties.contentEncoding!) is not supported")
        }
        func int(_ key: String) throws(DecodeFailure) -> Int? {
            guard let value = headers[key] else { return nil }
            guard let i = integer(value) else { throw DecodeFailure(.invalidEnvelope, "header \(key) is not an integer") }
            return i
        }
        func string(_ key: String) throws(DecodeFailure) -> String? {
            guard let value = headers[key] else { return nil }
            guard let s = value.stringValue else { throw DecodeFailure(.invalidEnvelope, "header \(key) is not a string") }
            return s
        }
        func date(_ key: String) throws(DecodeFailure) -> Date? {
            try int(key).map { Date(epochMilliseconds: Int64($0)) }
        }
        let attempt = try int(WireHeader.attempt) ?? 1
        guard attempt >= 1 else { throw DecodeFailure(.invalidEnvelope, "header \(WireHeader.attempt) must be 1 or more") }
        let maxAttempts = try int(WireHeader.maxAttempts)
        if let maxAttempts, maxAttempts < 1 { throw DecodeFailure(.invalidEnvelope, "header \(WireHeader.maxAttempts) must be 1 or more") }
        var retryPolicy: RetryPolicy? = nil
        if let value = headers[WireHeader.retry] {
            guard let table = value.tableValue, let policy = RetryPolicy(fieldTable: table) else {
                throw DecodeFailure(.invalidEnvelope, "header \(WireHeader.retry) is not a valid retry table")
            }
            retryPolicy = policy
        }
        // The body must be JSON (any JSON value); the handler decodes its own type.
        if !JSONValidator.isValid(body) {
            throw DecodeFailure(.undecodable, "the body is not valid JSON")
        }
        // No time at all (allowed): unknown, never "now", which would report a zero wait.
        let enqueued = try date(WireHeader.enqueuedAt)
            ?? properties.timestamp.map { Date(epochMilliseconds: Int64(clamping: min($0, UInt64(Int64.max / 1000)) * 1000)) }
        var others = FieldTable()
        for (key, value) in headers where !WireHeader.isKnown(key) { others[key] = value }
        let headerID = try string(WireHeader.id)
        let id = properties.messageId.flatMap { $0.isEmpty ? nil : $0 } ?? headerID.flatMap { $0.isEmpty ? nil : $0 }
            ?? contentID(properties: properties, body: body)
        let workflowRunID = try string(WireHeader.workflowRun) ?? properties.correlationId
        // What this worker writes back as short strings (retry copies, events)
        // must fit one: a header may carry more than a property can.
        do {
            try WireLimits.checkShortString(id, field: "the task id")
            try WireLimits.checkShortString(name, field: "the task name")
            if let workflowRunID { try WireLimits.checkShortString(workflowRunID, field: "the workflow run id") }
        } catch {
            throw DecodeFailure(.invalidEnvelope, error.message)
        }
        return TaskEnvelope(
            id: id,
            // The queue it was consumed from, not a header: retries must route back here.
            name: name, queue: queue, arguments: body, attempt: attempt,
            maxAttempts: maxAttempts, retryPolicy: retryPolicy, notBefore: try date(WireHeader.notBefore),
            deadline: try date(WireHeader.deadline), idempotencyKey: try string(WireHeader.idempotencyKey),
            workflowRunID: workflowRunID,
            workflowStep: try string(WireHeader.workflowStep), traceparent: try string(WireHeader.traceparent),
            enqueuedAt: enqueued, replyTo: properties.replyTo.flatMap { $0.isEmpty ? nil : $0 },
            // The level it was consumed from, like the queue: retries route back there.
            priority: priority ?? headers[WireHeader.priority]?.stringValue.flatMap(TaskPriority.init(rawValue:)) ?? .normal,
            track: headers[WireHeader.track].map(Self.isTrue) ?? false,
            otherHeaders: others)
    }
}

extension TaskEnvelope {
    /// A flag header: 1, true, or "1"/"true" (tools that send only strings).
    public static func isTrue(_ value: FieldValue) -> Bool {
        if let b = value.boolValue { return b }
        if let i = value.intValue { return i != 0 }
        return value.stringValue.map { $0 == "1" || $0.lowercased() == "true" } ?? false
    }
}

/// An id for a message that carries none, the same on every redelivery: a
/// 128-bit FNV-1a hash of its name, timestamp, headers and body. Identical
/// id-less messages get the same id, and are indistinguishable anyway.
func contentID(properties: BasicProperties, body: [UInt8]) -> String {
    var bytes = Array((properties.type ?? "").utf8)
    bytes += String(properties.timestamp ?? 0).utf8
    for (k, v) in (properties.headers ?? [:]).sorted(by: { $0.key < $1.key }) { bytes += k.utf8; bytes += "\(v)".utf8 }
    bytes += body
    return "h-" + contentHash(bytes)
}

/// Why a message cannot be run as a task.
public struct DecodeFailure: Error, Sendable, Hashable {
    /// The dead-letter reason.
    public var reason: DeadReason
    /// Details.
    public var message: String

    public init(_ reason: DeadReason, _ message: String) {
        self.reason = reason
        self.message = message
    }
}

/// Why a task ended in its dead queue (header `sluice-dead-reason`).
public enum DeadReason: String, Sendable, Hashable, Codable, CaseIterable {
    /// The body or content type cannot be decoded.
    case undecodable
    /// Required properties or headers are missing or malformed.
    case invalidEnvelope = "invalid_envelope"
    /// A newer protocol version than this worker reads.
    case unsupportedVersion = "unsupported_version"
    /// No handler is registered for the task name.
    case unknownTask = "unknown_task"
    /// The body exceeds the worker's size limit.
    case tooLarge = "too_large"
    /// The deadline passed before the task started.
    case deadlineExpired = "deadline_expired"
    /// The handler failed with an error marked non-retryable.
    case nonRetryable = "non_retryable"
    /// The handler failed on every allowed attempt.
    case maxAttempts = "max_attempts"
    /// The broker's delivery limit: the task kept crashing or hanging workers.
    case deliveryLimit = "delivery_limit"
    /// Run alone, it crashed its worker process again and again (a
    /// supervised worker, `sluice worker --processes`).
    case crashedWorker = "crashed_worker"
    /// Revoked (``Revocation``) before it started, or cancelled while
    /// running by a revocation with `terminate`.
    case revoked
    /// Dead-lettered by the broker for another reason (rejected, expired...).
    case broker
}

extension Date {
    /// Milliseconds since the Unix epoch, clamped to ±2^62 (a hostile header
    /// must not trap the conversion).
    public var epochMilliseconds: Int64 {
        let ms = (timeIntervalSince1970 * 1000).rounded()
        guard ms.isFinite else { return 0 }
        return Int64(min(max(ms, -4.6e18), 4.6e18))
    }

    /// A date from milliseconds since the Unix epoch.
    public init(epochMilliseconds: Int64) { self.init(timeIntervalSince1970: TimeInterval(epochMilliseconds) / 1000) }
}
