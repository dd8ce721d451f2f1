import Foundation

/// What happened to a task, published on the events exchange as JSON with
/// routing key `<queue>.<kind>`.
public struct TaskEvent: Sendable, Hashable, Codable {
    /// Event kinds, also the last routing-key word.
    public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
        case received, started, succeeded, failed, retrying, dead
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
    }

    /// JSON for the wire (ISO 8601 dates with milliseconds).
    public func jsonBytes() -> [UInt8] {
        (try? Array(Self.encoder.encode(self))) ?? []
    }

    /// Reads an event from its JSON.
    public static func decode(_ bytes: [UInt8]) throws -> TaskEvent {
        try decoder.decode(TaskEvent.self, from: Data(bytes))
    }

    private static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(date.epochMilliseconds)
        }
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    private static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            Date(epochMilliseconds: try decoder.singleValueContainer().decode(Int64.self))
        }
        return d
    }()
}
