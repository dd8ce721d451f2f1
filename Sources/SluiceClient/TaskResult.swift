public import Foundation
public import SluiceCore

/// A task's final outcome when it succeeded: what the worker's handler
/// returned, and who ran it.
public struct TaskResult: Sendable, Hashable {
    /// The task id.
    public var taskID: String
    /// The task name.
    public var taskName: String
    /// The queue it ran from.
    public var queue: String
    /// The attempt that succeeded (1 unless it was retried).
    public var attempt: Int
    /// The handler's result as JSON text; nil when it returned nothing.
    public var json: String?
    /// Set when the result was dropped (larger than the worker's limit).
    public var note: String?
    /// The worker that ran it (`host:pid`).
    public var worker: String?
    /// How long the handler ran, in milliseconds.
    public var durationMilliseconds: Double?
    /// When it finished.
    public var at: Date

    /// The result decoded as `R` (JSON).
    public func decode<R: Decodable>(_ type: R.Type) throws -> R {
        guard let json else {
            throw SluiceError(.invalidArgument, "the task returned no result" + (note.map { " (\($0))" } ?? ""), task: taskName, queue: queue)
        }
        do {
            return try JSONDecoder().decode(R.self, from: Data(json.utf8))
        } catch {
            throw SluiceError(.invalidArgument, "the result does not decode as \(R.self): \(error)", task: taskName, queue: queue)
        }
    }
}

/// A task that ended in its dead queue: its final outcome, thrown by
/// ``TaskHandle/result(timeout:)``.
public struct TaskFailed: Error, Sendable, Hashable, CustomStringConvertible {
    /// The task id.
    public var taskID: String
    /// The task name.
    public var taskName: String
    /// The queue.
    public var queue: String
    /// The last attempt.
    public var attempt: Int
    /// Why it is dead (`max_attempts`, `non_retryable`, `unknown_task`...).
    public var reason: DeadReason?
    /// The last error's kind and text.
    public var errorType: String?
    public var errorMessage: String?

    public var description: String {
        "task \(taskName) (\(taskID)) on queue \(queue) is dead after attempt \(attempt): "
            + "\(reason?.rawValue ?? "unknown reason")" + (errorType.map { ", \($0)" } ?? "") + (errorMessage.map { ": \($0)" } ?? "")
    }
}

extension TaskEvent {
    /// The outcome a reply carries: a result, or the failure to throw.
    func outcome() -> Result<TaskResult, TaskFailed> {
        if kind == .succeeded {
            // A result dropped for its size comes as a note in errorMessage.
            return .success(TaskResult(taskID: taskID, taskName: taskName, queue: queue, attempt: attempt, json: result,
                                       note: errorMessage, worker: worker, durationMilliseconds: durationMilliseconds, at: at))
        }
        return .failure(TaskFailed(taskID: taskID, taskName: taskName, queue: queue, attempt: attempt, reason: deadReason,
                                   errorType: errorType, errorMessage: errorMessage))
    }
}
