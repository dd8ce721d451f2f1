public import Foundation
public import SluiceWorkflow

/// What the coordinator knows of a tracked task (``SluiceCore/TaskEnvelope/track``):
/// `GET /v1/tasks/{id}` and `sluice task status` show it.
public struct TrackedTask: Sendable, Hashable, Codable {
    public enum Status: String, Sendable, Hashable, Codable, CaseIterable {
        /// Enqueued, not started (or started by a worker that has not said so yet).
        case queued
        case running
        /// Failed an attempt; the next one starts at ``TrackedTask/nextAttemptAt``.
        case retrying
        case succeeded
        case dead

        public var isFinal: Bool { self == .succeeded || self == .dead }
    }

    public var id: String
    public var name: String
    public var queue: String
    public var status: Status
    /// The attempt the status is about (1 for the first run).
    public var attempt: Int
    public var enqueuedAt: Date?
    /// When the latest attempt started.
    public var startedAt: Date?
    /// When it succeeded or went dead.
    public var finishedAt: Date?
    /// The last change to the record.
    public var updatedAt: Date
    /// The worker (`host:pid`) that reported last.
    public var worker: String?
    /// The last failure (kept while later attempts run).
    public var errorType: String?
    public var errorMessage: String?
    /// Why it went dead (``SluiceCore/DeadReason``).
    public var deadReason: String?
    /// `retrying`: when the next attempt is due.
    public var nextAttemptAt: Date?
    /// `succeeded`: the handler's result.
    public var result: JSONValue?
    /// The running attempt's last progress report: fraction done (0...1) and message.
    public var progress: Double?
    public var progressMessage: String?
    public var progressAt: Date?

    public init(id: String, name: String, queue: String, status: Status, attempt: Int, enqueuedAt: Date? = nil, startedAt: Date? = nil,
                finishedAt: Date? = nil, updatedAt: Date, worker: String? = nil, errorType: String? = nil, errorMessage: String? = nil,
                deadReason: String? = nil, nextAttemptAt: Date? = nil, result: JSONValue? = nil, progress: Double? = nil,
                progressMessage: String? = nil, progressAt: Date? = nil) {
        self.id = id
        self.name = name
        self.queue = queue
        self.status = status
        self.attempt = attempt
        self.enqueuedAt = enqueuedAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.updatedAt = updatedAt
        self.worker = worker
        self.errorType = errorType
        self.errorMessage = errorMessage
        self.deadReason = deadReason
        self.nextAttemptAt = nextAttemptAt
        self.result = result
        self.progress = progress
        self.progressMessage = progressMessage
        self.progressAt = progressAt
    }
}
