public import Foundation
public import SluiceCore
public import SluiceAPI

/// One tracked task's event as a store write (pure: made from the event).
///
/// Events reach the coordinator at least once and in any order (the
/// producer's `queued` and a worker's `started` travel on different
/// connections; a redelivered event comes again). So a record only moves
/// forward: each change has a ``stage`` (attempt, then queued < started <
/// retrying < succeeded or dead) and the store applies it only over a lower
/// stage, or a final status over the same final stage when it is newer (a
/// task replayed from its dead queue keeps its attempt). Fields a change
/// does not know (a `succeeded` that came before its `started` has no start
/// time) keep what the record had; a late `started` still fills in the
/// start. A `queued` event only ever creates a record (producers may
/// publish it: it must not reset one) or fills in its enqueue time.
public struct TaskTrackingChange: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// Moves the status (applied over a lower stage).
        case status(TrackedTask.Status)
        /// The running attempt's progress (applied while that attempt runs).
        case progress(Double, message: String?)
    }

    public var kind: Kind
    public var taskID: String
    public var name: String
    public var queue: String
    public var attempt: Int
    public var at: Date
    public var worker: String?
    public var errorType: String?
    public var errorMessage: String?
    public var deadReason: String?
    public var nextAttemptAt: Date?
    /// JSON text of a success's result.
    public var result: String?
    /// A success or failure that came without its `started`: when the run began.
    public var startedAt: Date?

    /// Orders a task's changes: attempt first, then the step within it.
    public var stage: Int {
        let step: Int = switch kind {
        case .status(.queued): 0
        case .status(.running), .progress: 1
        case .status(.retrying): 2
        case .status(.succeeded), .status(.dead): 3
        }
        return attempt * 4 + step
    }

    /// The most attempts a change may name: beyond, the event is not a
    /// worker's (and ``stage`` could overflow).
    public static let maxAttempt = 1_000_000

    /// The change an event means; nil for kinds tracking does not record, and
    /// for an attempt no worker reports.
    public init?(_ event: TaskEvent) {
        guard (1...Self.maxAttempt).contains(event.attempt) else { return nil }
        let kind: Kind
        switch event.kind {
        case .queued: kind = .status(.queued)
        case .started: kind = .status(.running)
        case .retrying: kind = .status(.retrying)
        case .succeeded: kind = .status(.succeeded)
        case .dead: kind = .status(.dead)
        case .progress:
            guard let fraction = event.progress, fraction.isFinite else { return nil }
            kind = .progress(min(1, max(0, fraction)), message: event.progressMessage?.replacingOccurrences(of: "\u{0}", with: ""))
        case .received, .failed: return nil
        }
        self.kind = kind
        // PostgreSQL refuses NUL in text; SQLite would keep it: the same everywhere.
        func text(_ s: String?) -> String? { s.map { $0.contains("\u{0}") ? $0.replacingOccurrences(of: "\u{0}", with: "") : $0 } }
        taskID = text(event.taskID)!
        name = text(event.taskName)!
        queue = text(event.queue)!
        // A producer only ever enqueues attempt 1: a `queued` event says nothing else.
        attempt = event.kind == .queued ? 1 : event.attempt
        at = event.at
        worker = text(event.worker)
        errorType = text(event.errorType)
        errorMessage = text(event.errorMessage)
        deadReason = event.deadReason?.rawValue
        nextAttemptAt = event.nextDelayMilliseconds.map { event.at.addingTimeInterval(Double($0) / 1000) }
        result = event.result
        startedAt = event.kind == .started ? event.at
            : event.durationMilliseconds.map { event.at.addingTimeInterval(-$0 / 1000) }
    }

    /// The status it sets: a progress report means the attempt runs.
    public var status: TrackedTask.Status? {
        switch kind {
        case .status(let s): s
        case .progress: .running
        }
    }

    /// When the attempt finished (success or dead).
    public var finishedAt: Date? { status?.isFinal == true ? at : nil }
    /// The enqueue time a `queued` change carries.
    public var enqueuedAt: Date? { status == .queued ? at : nil }
}
