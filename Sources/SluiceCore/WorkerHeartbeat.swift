#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// A worker's periodic "I am alive" message on the events exchange (routing
/// key ``Topology/workerHeartbeatRoutingKey``). Workers also send one at once
/// when asked by a ping (``Topology/workerPingRoutingKey``), and a last one
/// with `state: "stopped"` when they exit.
public struct WorkerHeartbeat: Sendable, Codable, Hashable {
    public var worker: String
    public var host: String
    public var pid: Int
    public var queues: [String]
    public var concurrency: Int
    public var inFlight: Int
    public var processed: Int
    public var succeeded: Int
    public var retried: Int
    public var dead: Int
    public var startedAt: Date
    public var at: Date
    /// Sluice's version on that worker.
    public var version: String?
    /// `running`, `stopping` (draining after SIGTERM) or `stopped` (its last beat).
    public var state: String?
    /// Seconds until the next beat; a worker silent for 3 of them is gone.
    public var intervalSeconds: Double?
    /// Per queue it consumes (level names), the enqueue time of the newest
    /// task it has received, to the second (the AMQP `timestamp`). Tasks
    /// still ready in a FIFO queue were enqueued after it, which bounds the
    /// backlog's age when the broker cannot tell it (quorum queues).
    public var newestTaken: [String: Date]?
    /// The rate limits it holds a share of (``RateLimit/key`` to starts per
    /// second across the fleet): its peers with the same key divide the
    /// limit by how many of them are live.
    public var rateLimits: [String: Double]?
    /// The queues whose ordered partitions it consumes (`--ordered`): the
    /// workers listing a queue share its partitions out among themselves.
    public var orderedQueues: [String]?

    public init(worker: String, host: String, pid: Int, queues: [String], concurrency: Int, inFlight: Int, processed: Int,
                succeeded: Int, retried: Int, dead: Int, startedAt: Date, at: Date, version: String? = SluiceVersion.current,
                state: String? = "running", intervalSeconds: Double? = nil, newestTaken: [String: Date]? = nil,
                rateLimits: [String: Double]? = nil, orderedQueues: [String]? = nil) {
        self.worker = worker
        self.host = host
        self.pid = pid
        self.queues = queues
        self.concurrency = concurrency
        self.inFlight = inFlight
        self.processed = processed
        self.succeeded = succeeded
        self.retried = retried
        self.dead = dead
        self.startedAt = startedAt
        self.at = at
        self.version = version
        self.state = state
        self.intervalSeconds = intervalSeconds
        self.newestTaken = newestTaken
        self.rateLimits = rateLimits
        self.orderedQueues = orderedQueues
    }

    /// Attempts that did not succeed (retried or dead-lettered).
    public var failed: Int { retried + dead }

    public func jsonBytes() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .millisecondsSince1970
        encoder.outputFormatting = [.sortedKeys]
        return (try? Array(encoder.encode(self))) ?? []
    }

    public static func decode(_ bytes: [UInt8]) throws -> WorkerHeartbeat {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        return try decoder.decode(WorkerHeartbeat.self, from: Data(bytes))
    }
}

/// The version this build of Sluice reports in heartbeats and `--version`.
public enum SluiceVersion {
    public static let current = "0.6.0"
}
