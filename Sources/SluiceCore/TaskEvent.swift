#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// What happened to a task, published on the events exchange as JSON with
/// routing key `<queue>.<kind>`.
public struct TaskEvent: Sendable, Hashable, Codable {
    /// Event kinds, also the last routing-key word.
    public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
        case received, started, succeeded, failed, retrying, dead
        /// A tracked task was enqueued (published by its producer).
        case queued
        /// A running task reported how far it is (``TaskEvent/progress``).
        case progress
    }

    public var kind: Kind
    public var taskID: String
    public var taskName: String
    public var queue: String
    public var attempt: Int
    /// When it happened.
    public var at: Date
    /// `succeeded`: the handler's result (JSON text).
    public var result: String?
    /// `failed`, `retrying`, `dead`: the error.
    public var errorType: String?
    public var errorMessage: String?
    /// `retrying`: the wait before the next attempt.
    public var nextDelayMilliseconds: Int?
    /// `dead`: why.
    public var deadReason: DeadReason?
    /// Workflow context, when the task is a step.
    public var workflowRunID: String?
    public var workflowStep: String?
    /// Who reported it (`host:pid`).
    public var worker: String?
    /// `succeeded`/`failed`: how long the handler ran, in milliseconds.
    public var durationMilliseconds: Double?
    /// Outcomes of a run (`succeeded`, `retrying`, `dead` after running): how
    /// long the attempt waited between becoming due (enqueued, or its
    /// not-before time) and its start, in milliseconds. Carried here so that
    /// monitoring needs no `started` events.
    public var waitMilliseconds: Double?
    /// Set on the events of a tracked task (``TaskEnvelope/track``).
    public var tracked: Bool?
    /// `progress`: the fraction done, 0...1, and what the handler said.
    public var progress: Double?
    public var progressMessage: String?
    /// HMAC-SHA256 of the outcome, hex, when workers share an event key
    /// with the coordinator (see ``EventSigner``).
    public var signature: String?

    public init(kind: Kind, task: TaskEnvelope, at: Date = Date(), worker: String? = nil) {
        self.kind = kind
        self.taskID = task.id
        self.taskName = task.name
        self.queue = task.queue
        self.attempt = task.attempt
        self.at = at
        self.workflowRunID = task.workflowRunID
        self.workflowStep = task.workflowStep
        self.worker = worker
        self.tracked = task.track ? true : nil
    }

    /// The required fields only (``TaskEventReader``).
    init(kind: Kind, taskID: String, taskName: String, queue: String, attempt: Int, at: Date) {
        self.kind = kind
        self.taskID = taskID
        self.taskName = taskName
        self.queue = queue
        self.attempt = attempt
        self.at = at
    }

    /// JSON for the wire: keys sorted, `at` in milliseconds since the epoch.
    /// Written by hand: JSONEncoder was the largest cost of a worker's task.
    public func jsonBytes() -> [UInt8] {
        func size(_ s: String?) -> Int { s.map(JSONText.literalCount) ?? 0 }
        let capacity = 2 + 20 * JSONObjectWriter.bytesPerField
            + size(deadReason?.rawValue) + size(errorMessage) + size(errorType) + size(kind.rawValue) + size(progressMessage)
            + size(queue) + size(result) + size(signature) + size(taskID) + size(taskName) + size(worker)
            + size(workflowRunID) + size(workflowStep)
        return JSONObjectWriter.bytes(capacity: capacity) { w in
            w.field("at", at.epochMilliseconds)
            w.field("attempt", Int64(attempt))
            if let deadReason { w.field("deadReason", deadReason.rawValue) }
            if let durationMilliseconds { w.field("durationMilliseconds", durationMilliseconds) }
            if let errorMessage { w.field("errorMessage", errorMessage) }
            if let errorType { w.field("errorType", errorType) }
            w.field("kind", kind.rawValue)
            if let nextDelayMilliseconds { w.field("nextDelayMilliseconds", Int64(nextDelayMilliseconds)) }
            if let progress { w.field("progress", progress) }
            if let progressMessage { w.field("progressMessage", progressMessage) }
            w.field("queue", queue)
            if let result { w.field("result", result) }
            if let signature { w.field("signature", signature) }
            w.field("taskID", taskID)
            w.field("taskName", taskName)
            if let tracked { w.field("tracked", tracked) }
            if let waitMilliseconds { w.field("waitMilliseconds", waitMilliseconds) }
            if let worker { w.field("worker", worker) }
            if let workflowRunID { w.field("workflowRunID", workflowRunID) }
            if let workflowStep { w.field("workflowStep", workflowStep) }
        }
    }

    /// Reads an event from its JSON.
    public static func decode(_ bytes: [UInt8]) throws -> TaskEvent {
        try TaskEventReader.event(bytes) ?? decoder.decode(TaskEvent.self, from: Data(bytes))
    }

    /// Reads an event with Foundation's decoder alone (what ``decode(_:)``
    /// falls back to, and must agree with).
    static func decodeWithFoundation(_ bytes: [UInt8]) throws -> TaskEvent {
        try decoder.decode(TaskEvent.self, from: Data(bytes))
    }

    /// Reads a JSON array of events (an ``EventPack``).
    static func decodeArray(_ bytes: [UInt8]) throws -> [TaskEvent] {
        try TaskEventReader.events(bytes) ?? decoder.decode([TaskEvent].self, from: Data(bytes))
    }

    /// Reads a JSON array element by element: nil for each element that is
    /// not an event; nil for the whole if the body is not a JSON array.
    static func decodeEachOfArray(_ bytes: [UInt8]) -> [TaskEvent?]? {
        /// One element: the event, or nil when it is something else.
        struct Element: Decodable {
            var event: TaskEvent?
            init(from decoder: any Decoder) throws { event = try? TaskEvent(from: decoder) }
        }
        return (try? decoder.decode([Element].self, from: Data(bytes)))?.map(\.event)
    }

    private static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            Date(epochMilliseconds: try decoder.singleValueContainer().decode(Int64.self))
        }
        return d
    }()
}
