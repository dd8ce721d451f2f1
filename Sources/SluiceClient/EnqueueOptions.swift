public import Foundation
public import SluiceCore

/// How to enqueue one task.
public struct EnqueueOptions: Sendable {
    /// The queue (default: the task's own).
    public var queue: String?
    /// Start no earlier than this long from now.
    public var delay: Duration?
    /// Start no earlier than this time (wins over `delay`).
    public var notBefore: Date?
    /// Runs allowed in all.
    public var maxAttempts: Int?
    /// Backoff overriding the worker's policy.
    public var retryPolicy: RetryPolicy?
    /// The key handlers use to deduplicate side effects (default: the task id).
    public var idempotencyKey: String?
    /// Dead-letter instead of starting after this time.
    public var deadline: Date?
    /// A task id of the caller's choosing (default: a new UUID).
    public var id: String?
    /// W3C trace context to carry.
    public var traceparent: String?
    /// Workflow context (set by the coordinator).
    public var workflowRunID: String?
    public var workflowStep: String?
    /// Where the worker sends the task's final outcome (`reply_to`): a reply
    /// queue of this prefix (`<prefix>.reply.<id>`, see
    /// `Topology.isReplyQueue`). ``TaskClient/enqueueForResult(name:json:options:)``
    /// sets the client's own; set this only to collect outcomes yourself.
    /// (RabbitMQ's direct reply-to needs the publishing channel to consume
    /// it, which `TaskClient`'s channels do not: other clients can use it.)
    public var replyTo: String?
    /// The priority level (``TaskPriority``); nil: normal, or the level the
    /// queue is named at (`emails~high`). Workers started with priorities
    /// take from every level; see `Worker.Configuration.priorities`.
    public var priority: TaskPriority?
    /// Whether the coordinator keeps the task's status, attempts, error and
    /// result (`GET /v1/tasks/{id}`, `sluice task status`); nil: as the
    /// client's ``TaskClient/trackedQueues`` say for its queue.
    public var track: Bool?
    /// At most one task with this key at a time (see ``UniqueKey``): while
    /// its lock is held, enqueueing returns the holder's id and publishes
    /// nothing (``TaskClient/enqueueUnique(name:json:options:)`` also says which).
    public var unique: UniqueKey?
    /// Tasks with the same order key run one at a time, in enqueue order,
    /// whatever the number of workers (workers of the queue need `ordered`;
    /// see `Topology.orderedExchange`). Not with a delay or a priority level.
    public var orderKey: String?

    public init(queue: String? = nil, delay: Duration? = nil, notBefore: Date? = nil, maxAttempts: Int? = nil,
                retryPolicy: RetryPolicy? = nil, idempotencyKey: String? = nil, deadline: Date? = nil, id: String? = nil,
                traceparent: String? = nil, workflowRunID: String? = nil, workflowStep: String? = nil, replyTo: String? = nil,
                priority: TaskPriority? = nil, track: Bool? = nil, unique: UniqueKey? = nil, orderKey: String? = nil) {
        self.queue = queue
        self.orderKey = orderKey
        self.unique = unique
        self.track = track
        self.priority = priority
        self.delay = delay
        self.notBefore = notBefore
        self.maxAttempts = maxAttempts
        self.retryPolicy = retryPolicy
        self.idempotencyKey = idempotencyKey
        self.deadline = deadline
        self.id = id
        self.traceparent = traceparent
        self.workflowRunID = workflowRunID
        self.workflowStep = workflowStep
        self.replyTo = replyTo
    }
}
