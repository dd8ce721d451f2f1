#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
public import Logging
public import SluiceCore

/// What a handler knows about the task it runs.
public struct TaskContext: Sendable {
    /// The task, with its arguments and metadata.
    public let task: TaskEnvelope
    private var baseLogger: Logger
    private let progressSink: ProgressSink?

    /// A context for `task`; `logger` gets the task's metadata.
    public init(task: TaskEnvelope, logger: Logger) {
        self.task = task
        self.baseLogger = logger
        self.progressSink = nil
    }

    init(task: TaskEnvelope, logger: Logger, progress: ProgressSink?) {
        self.task = task
        self.baseLogger = logger
        self.progressSink = progress
    }

    /// Reports how far the task is: `fraction` from 0 to 1 (clamped), and
    /// what it is doing. Sent as a `progress` event, at most one a second
    /// per task (reports in between are dropped; one of 1 always goes), and
    /// not waited for. A tracked task's record (`sluice task status`), a
    /// workflow step's state and `sluice top` show the latest.
    public func progress(_ fraction: Double, message: String? = nil) {
        progressSink?.report(task, fraction: fraction, message: message)
    }

    /// A logger carrying the task's id, name, queue and attempt. Built when
    /// asked for: attaching metadata costs more than most handlers.
    public var logger: Logger {
        get {
            var l = baseLogger
            l[metadataKey: "task.id"] = "\(task.id)"
            l[metadataKey: "task.name"] = "\(task.name)"
            l[metadataKey: "task.queue"] = "\(task.queue)"
            l[metadataKey: "task.attempt"] = "\(task.attempt)"
            return l
        }
        set { baseLogger = newValue }
    }

    /// Whether the logger would write debug messages (cheap to ask).
    var logsAtDebug: Bool { baseLogger.logLevel <= .debug }

    /// Stable across retries and redeliveries.
    public var id: String { task.id }
    /// The task name.
    public var name: String { task.name }
    /// 1 for the first run.
    public var attempt: Int { task.attempt }
    /// The priority level the task was taken from.
    public var priority: TaskPriority { task.priority }
    /// When the task must have finished starting.
    public var deadline: Date? { task.deadline }
    /// Use this to make side effects idempotent (execution is at-least-once).
    public var idempotencyKey: String { task.effectiveIdempotencyKey }
    /// The W3C trace context the task carries, if any.
    public var traceparent: String? { task.traceparent }
    /// The raw JSON arguments.
    public var arguments: [UInt8] { task.arguments }

    /// Decodes the JSON arguments; a failure is a non-retryable error.
    public func decode<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(task.arguments))
        } catch {
            throw TaskFailure.permanent("arguments do not decode as \(T.self): \(error)", kind: "bad_arguments")
        }
    }
}
