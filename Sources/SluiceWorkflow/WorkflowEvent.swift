public import Foundation
public import SluiceCore

/// What can happen to a run: the state machine's input. Codable: a
/// coordinator sends an event for a run in another's partition as a run message.
public enum WorkflowEvent: Sendable, Hashable, Codable {
    /// Starts a pending run.
    case start(at: Date)
    /// A step's task (or a map element's) succeeded with its result.
    case taskSucceeded(taskID: String, attempt: Int, output: JSONValue?, at: Date)
    /// A step's running task reported how far it is (fraction 0...1).
    case taskProgress(taskID: String, attempt: Int, fraction: Double, message: String?, at: Date)
    /// A step's task failed and the worker will run it again.
    case taskRetrying(taskID: String, attempt: Int, error: String, at: Date)
    /// A step's task ended in its dead queue: it failed for good.
    case taskDead(taskID: String, attempt: Int, reason: String, error: String?, at: Date)
    /// A timer the machine scheduled came due.
    case timerFired(timerID: String, at: Date)
    /// A sub-workflow run finished (`output` when it completed, `error` when not).
    case childFinished(childKey: String, succeeded: Bool, output: JSONValue?, error: String?, at: Date)
    /// Stops publishing new steps; running ones finish.
    case pause(at: Date)
    case resume(at: Date)
    /// Ends the run for good; later results of its steps are ignored.
    case cancel(reason: String, at: Date)
    /// Runs a failed step again (and the steps that failed or were skipped
    /// because of it); with `rerun`, also every step after it, whatever its outcome.
    case retryStep(stepID: String, rerun: Bool, at: Date)
    /// A signal sent to the run (`id` makes a second copy of it a no-op).
    case signal(name: String, id: String, data: JSONValue, at: Date)

    /// Builds the event a worker's task event means for a workflow, or nil
    /// for kinds that do not concern the coordinator.
    public init?(_ event: TaskEvent) {
        switch event.kind {
        case .succeeded:
            let output = event.result.flatMap { try? JSONValue.parse($0) }
            self = .taskSucceeded(taskID: event.taskID, attempt: event.attempt, output: output, at: event.at)
        case .retrying:
            self = .taskRetrying(taskID: event.taskID, attempt: event.attempt,
                                 error: event.errorMessage ?? event.errorType ?? "failed", at: event.at)
        case .dead:
            self = .taskDead(taskID: event.taskID, attempt: event.attempt, reason: event.deadReason?.rawValue ?? "dead",
                             error: event.errorMessage, at: event.at)
        case .progress:
            guard let fraction = event.progress, fraction.isFinite else { return nil }
            self = .taskProgress(taskID: event.taskID, attempt: event.attempt, fraction: min(1, max(0, fraction)),
                                 message: event.progressMessage, at: event.at)
        case .received, .started, .failed, .queued:
            return nil
        }
    }
}

/// What the coordinator must do: the state machine's output, carried out
/// only after the new state is committed.
public enum WorkflowAction: Sendable, Hashable {
    /// Publish these tasks (duplicates are harmless: their ids are stable).
    case publish([StepTask])
    case scheduleTimer(timerID: String, at: Date)
    case cancelTimer(timerID: String)
    /// Start a sub-workflow run for a step; its end comes back as `childFinished`.
    case startChild(childKey: String, workflow: String, version: Int?, input: JSONValue)
    case cancelChild(childKey: String)
    /// Revoke these published step tasks (the run was cancelled): workers
    /// that have not started them dead-letter them instead.
    case revokeTasks([String])
    /// The run completed with this output.
    case completed(output: JSONValue)
    /// The run failed.
    case failed(reason: String)
    /// The run was cancelled.
    case cancelled(reason: String)
}

/// A task the coordinator publishes for a step.
public struct StepTask: Sendable, Hashable, Codable {
    /// Stable: the same step (and element, and generation) always gets the same id.
    public var taskID: String
    public var name: String
    public var queue: String?
    public var arguments: JSONValue
    public var maxAttempts: Int?
    public var retry: RetryPolicy?
    public var runID: String
    public var stepID: String
    /// The map element, for map steps.
    public var index: Int?
    /// The run's W3C trace context; the task gets a child span of it.
    public var traceparent: String?

    public init(taskID: String, name: String, queue: String?, arguments: JSONValue, maxAttempts: Int?, retry: RetryPolicy?,
                runID: String, stepID: String, index: Int?, traceparent: String? = nil) {
        self.taskID = taskID
        self.name = name
        self.queue = queue
        self.arguments = arguments
        self.maxAttempts = maxAttempts
        self.retry = retry
        self.runID = runID
        self.stepID = stepID
        self.index = index
        self.traceparent = traceparent
    }
}

extension WorkflowEvent {
    /// When it happened.
    public var at: Date {
        switch self {
        case .start(let at), .pause(let at), .resume(let at): return at
        case .taskSucceeded(_, _, _, let at), .taskProgress(_, _, _, _, let at), .taskRetrying(_, _, _, let at),
             .taskDead(_, _, _, _, let at): return at
        case .timerFired(_, let at), .cancel(_, let at): return at
        case .childFinished(_, _, _, _, let at): return at
        case .retryStep(_, _, let at): return at
        case .signal(_, _, _, let at): return at
        }
    }
}

extension WorkflowEvent {
    /// What the run's history says of this event, if it is a command.
    var commandRecord: RunState.CommandRecord? {
        switch self {
        case .pause(let at): RunState.CommandRecord(command: "pause", at: at)
        case .resume(let at): RunState.CommandRecord(command: "resume", at: at)
        case .cancel(let reason, let at): RunState.CommandRecord(command: "cancel", at: at, detail: reason)
        case .retryStep(let step, let rerun, let at): RunState.CommandRecord(command: "retry", at: at, detail: rerun ? "\(step) (run again)" : step)
        case .signal(let name, let id, _, let at): RunState.CommandRecord(command: "signal", at: at, detail: "\(name) (id \(id))")
        default: nil
        }
    }
}
