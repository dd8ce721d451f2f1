public import Foundation
public import SluiceCore

/// The body of `GET /v1/queues`: every task queue of the coordinator's
/// prefix, as its last sample saw it (what `sluice queues` and `sluice top`
/// show), with a short history for charts.
public struct QueueList: Codable, Sendable {
    /// When the sample was taken.
    public var at: Date
    /// Whether rates and unacknowledged counts came from the management API.
    public var ratesAvailable: Bool
    public var ratesUnavailableReason: String?
    /// Tasks waiting in the delay ladder (retries and delayed tasks, all queues).
    public var delayed: Int?
    public var queues: [QueueInfo]

    public init(at: Date, ratesAvailable: Bool, ratesUnavailableReason: String? = nil, delayed: Int? = nil, queues: [QueueInfo]) {
        self.at = at
        self.ratesAvailable = ratesAvailable
        self.ratesUnavailableReason = ratesUnavailableReason
        self.delayed = delayed
        self.queues = queues
    }
}

/// One task queue.
public struct QueueInfo: Codable, Sendable {
    public var queue: String
    public var ready: Int?
    /// Delivered, not yet acknowledged (management API only).
    public var unacknowledged: Int?
    public var consumers: Int?
    /// Tasks in its dead queue.
    public var dead: Int?
    /// Messages per second (management API only).
    public var publishRate: Double?
    public var deliverRate: Double?
    public var ackRate: Double?
    /// How long the oldest ready task has waited.
    public var oldestAgeSeconds: Double?
    /// The work queue does not exist (yet).
    public var missing: Bool
    /// Quorum queue replicas (management API only).
    public var leader: String?
    public var members: Int?
    public var online: Int?
    /// The queue's recent samples, oldest first (at most 60).
    public var history: [QueueSample]

    public init(queue: String, ready: Int? = nil, unacknowledged: Int? = nil, consumers: Int? = nil, dead: Int? = nil,
                publishRate: Double? = nil, deliverRate: Double? = nil, ackRate: Double? = nil, oldestAgeSeconds: Double? = nil,
                missing: Bool = false, leader: String? = nil, members: Int? = nil, online: Int? = nil, history: [QueueSample] = []) {
        self.queue = queue
        self.ready = ready
        self.unacknowledged = unacknowledged
        self.consumers = consumers
        self.dead = dead
        self.publishRate = publishRate
        self.deliverRate = deliverRate
        self.ackRate = ackRate
        self.oldestAgeSeconds = oldestAgeSeconds
        self.missing = missing
        self.leader = leader
        self.members = members
        self.online = online
        self.history = history
    }
}

/// A queue at one moment, for its charts.
public struct QueueSample: Codable, Sendable, Hashable {
    public var at: Date
    public var ready: Int?
    public var publishRate: Double?
    public var deliverRate: Double?

    public init(at: Date, ready: Int?, publishRate: Double?, deliverRate: Double?) {
        self.at = at
        self.ready = ready
        self.publishRate = publishRate
        self.deliverRate = deliverRate
    }
}

/// The body of `GET /v1/workers`: live workers, from their heartbeats.
public struct WorkerList: Codable, Sendable {
    public var at: Date
    public var workers: [WorkerInfo]

    public init(at: Date, workers: [WorkerInfo]) {
        self.at = at
        self.workers = workers
    }
}

/// One worker process.
public struct WorkerInfo: Codable, Sendable {
    public var worker: String
    /// `running`, `stopping`, `stopped` or `gone` (silent for three heartbeats).
    public var status: String
    public var host: String
    public var pid: Int
    public var queues: [String]
    public var concurrency: Int
    public var inFlight: Int
    public var processed: Int
    public var succeeded: Int
    public var retried: Int
    public var dead: Int
    public var version: String?
    public var startedAt: Date
    public var lastHeartbeatAt: Date
    public var uptimeSeconds: Double
    public var silentSeconds: Double

    public init(heartbeat: WorkerHeartbeat, status: String, uptimeSeconds: Double, silentSeconds: Double) {
        worker = heartbeat.worker
        self.status = status
        host = heartbeat.host
        pid = heartbeat.pid
        queues = heartbeat.queues
        concurrency = heartbeat.concurrency
        inFlight = heartbeat.inFlight
        processed = heartbeat.processed
        succeeded = heartbeat.succeeded
        retried = heartbeat.retried
        dead = heartbeat.dead
        version = heartbeat.version
        startedAt = heartbeat.startedAt
        lastHeartbeatAt = heartbeat.at
        self.uptimeSeconds = uptimeSeconds
        self.silentSeconds = silentSeconds
    }
}

/// The body of `GET /v1/queues/{queue}/dead`.
public struct DeadTaskPage: Codable, Sendable {
    public var queue: String
    /// Tasks in the dead queue (the page holds at most `limit` of them, oldest first).
    public var total: Int
    public var tasks: [DeadTask]

    public init(queue: String, total: Int, tasks: [DeadTask]) {
        self.queue = queue
        self.total = total
        self.tasks = tasks
    }
}

/// The body of `POST /v1/queues/{queue}/dead/replay`: exactly one of `ids`, `reason`, `all`.
public struct ReplayDeadRequest: Codable, Sendable {
    public var ids: [String]?
    public var reason: String?
    public var all: Bool?
    /// Start the attempt count again at 1.
    public var resetAttempts: Bool?

    public init(ids: [String]? = nil, reason: String? = nil, all: Bool? = nil, resetAttempts: Bool? = nil) {
        self.ids = ids
        self.reason = reason
        self.all = all
        self.resetAttempts = resetAttempts
    }
}

/// The answer to a replay.
public struct ReplayedDead: Codable, Sendable {
    public var queue: String
    public var replayed: [String]
    /// Ids asked for that the dead queue did not hold.
    public var notFound: [String]

    public init(queue: String, replayed: [String], notFound: [String]) {
        self.queue = queue
        self.replayed = replayed
        self.notFound = notFound
    }
}

/// The answer to a purge.
public struct PurgedDead: Codable, Sendable {
    public var queue: String
    public var purged: Int

    public init(queue: String, purged: Int) {
        self.queue = queue
        self.purged = purged
    }
}
