public import Foundation
public import SluiceCore
import SluiceWire
import Synchronization

/// One task queue's state: `sluice queues` prints one row per queue.
public struct QueueRow: Sendable, Hashable, Codable {
    /// The queue's name (without prefix).
    public var queue: String
    /// Ready tasks in the work queue.
    public var ready: Int?
    /// Delivered to a worker, not yet acknowledged (needs the management API).
    public var unacknowledged: Int?
    public var consumers: Int?
    /// Tasks in its dead queue.
    public var dead: Int?
    /// Per second (management API only).
    public var publishRate: Double?
    public var deliverRate: Double?
    public var ackRate: Double?
    /// Recent enqueue-to-start wait reported by workers (milliseconds), when known.
    public var recentWaitMilliseconds: Double?
    /// How long the oldest ready task has waited, in seconds (0 when none
    /// is ready), and what that was taken from: see ``BacklogAges``.
    public var oldestAgeSeconds: Double?
    public var oldestAgeBasis: BacklogAges.Basis?
    /// Set when the work queue does not exist.
    public var missing: Bool
    /// The work queue's replicas (quorum queues, management API only): the
    /// leader's node, and how many members it has and how many are online.
    public private(set) var leader: String?
    public private(set) var members: Int?
    public private(set) var online: Int?
    /// A member of the work queue is offline: it has fewer copies than it
    /// should, and one more node lost may stop it. (Stored, so that `--json`
    /// carries it for scripts that alert on it.)
    public private(set) var underReplicated = false

    /// Sets the replicas from the management API's member lists.
    public mutating func setReplicas(leader: String?, members: [String]?, online: [String]?) {
        self.leader = leader
        self.members = members?.count
        self.online = online?.count
        underReplicated = (online?.count ?? 0) < (members?.count ?? 0)
    }

    public init(queue: String, ready: Int? = nil, unacknowledged: Int? = nil, consumers: Int? = nil, dead: Int? = nil,
                publishRate: Double? = nil, deliverRate: Double? = nil, ackRate: Double? = nil,
                recentWaitMilliseconds: Double? = nil, missing: Bool = false) {
        self.queue = queue
        self.ready = ready
        self.unacknowledged = unacknowledged
        self.consumers = consumers
        self.dead = dead
        self.publishRate = publishRate
        self.deliverRate = deliverRate
        self.ackRate = ackRate
        self.recentWaitMilliseconds = recentWaitMilliseconds
        self.missing = missing
    }
}

/// Every queue under a prefix, at one moment.
public struct QueueOverview: Sendable, Hashable, Codable {
    public var prefix: String
    public var queues: [QueueRow]
    /// Tasks waiting in the delay ladder (retries and delayed tasks, all queues).
    public var delayed: Int?
    /// Whether rates and unacknowledged counts came from the management API.
    public var ratesAvailable: Bool
    /// Why they did not, if so.
    public var ratesUnavailableReason: String?
    public var at: Date
}

/// Gathers a ``QueueOverview``: from the management API when it answers,
/// else from passive declares (counts of ready tasks and consumers only).
/// Neither changes a queue: no get, no requeue, no delivery-count bump.
/// Ages of the oldest ready tasks come from what it has seen so far (see
/// ``BacklogAges``), so one collector used again and again knows more.
public struct QueueCollector: Sendable {
    public let broker: any Broker
    public let management: ManagementClient?
    private let ages = AgeState()

    private final class AgeState: Sendable {
        let mutex = Mutex(BacklogAges())
    }

    public init(broker: any Broker, management: ManagementClient?) {
        self.broker = broker
        self.management = management
    }

    /// Sets each row's oldest age from its ready count and what workers reported.
    private func applyAges(_ overview: inout QueueOverview, newestTaken: [String: Date]) {
        let now = overview.at
        ages.mutex.withLock { ages in
            ages.record(newestTaken: newestTaken, now: now)
            for i in overview.queues.indices where overview.queues[i].oldestAgeBasis != .broker || overview.queues[i].ready == 0 {
                let age = ages.observe(overview.queues[i].queue, ready: overview.queues[i].ready, now: now)
                overview.queues[i].oldestAgeSeconds = age?.seconds
                overview.queues[i].oldestAgeBasis = age?.basis
            }
        }
    }

    /// `only`: queue names to show (all the prefix's work queues when empty;
    /// without the management API, `known` when empty, else `default`).
    /// `known`: queues seen elsewhere, such as in worker heartbeats.
    /// `newestTaken`: per queue, the newest task workers received (``EventWatch/newestTaken()``).
    public func collect(only: [String] = [], known: [String] = [], waits: [String: Double] = [:],
                        newestTaken: [String: Date] = [:]) async -> QueueOverview {
        let topology = broker.topology
        var reason: String? = "no management API configured"
        if let management {
            do {
                let all = try await management.queues()
                var overview = Self.overview(from: all, topology: topology, only: only, waits: waits)
                // The API's counts are a sample (every 5 s by default); ready
                // and consumer counts from passive declares are exact now.
                for i in overview.queues.indices where !overview.queues[i].missing {
                    let name = overview.queues[i].queue
                    if let work = try? await broker.queueState(topology.workQueue(name)) {
                        overview.queues[i].ready = Int(work.messageCount)
                        overview.queues[i].consumers = Int(work.consumerCount)
                    }
                    if let dead = try? await broker.queueState(topology.deadQueue(name)) {
                        overview.queues[i].dead = Int(dead.messageCount)
                    }
                }
                overview.at = Date()
                applyAges(&overview, newestTaken: newestTaken)
                return overview
            } catch {
                reason = "\(error)"
            }
        }
        var rows: [QueueRow] = []
        let names = !only.isEmpty ? only : !known.isEmpty ? Array(Set(known)).sorted() : ["default"]
        for name in names {
            var row = QueueRow(queue: name, recentWaitMilliseconds: waits[name])
            if let work = try? await broker.queueState(topology.workQueue(name)) {
                row.ready = Int(work.messageCount)
                row.consumers = Int(work.consumerCount)
            } else {
                row.missing = true
            }
            row.dead = (try? await broker.queueState(topology.deadQueue(name))).map { Int($0.messageCount) }
            rows.append(row)
        }
        var delayed: Int? = 0
        for tier in topology.delayTiers {
            if let state = try? await broker.queueState(topology.delayQueue(tier)) {
                delayed? += Int(state.messageCount)
            } else {
                delayed = nil
                break
            }
        }
        var overview = QueueOverview(prefix: topology.prefix, queues: rows, delayed: delayed, ratesAvailable: false,
                                     ratesUnavailableReason: reason, at: Date())
        applyAges(&overview, newestTaken: newestTaken)
        return overview
    }

    /// Builds the overview from the management API's queue list (pure).
    public static func overview(from all: [ManagedQueue], topology: Topology, only: [String], waits: [String: Double],
                                at: Date = Date()) -> QueueOverview {
        var rows: [String: QueueRow] = [:]
        var delayed = 0
        var ordered: [String: (ready: Int, unacknowledged: Int)] = [:]
        for q in all {
            guard let (kind, name) = topology.queueKind(q.name) else { continue }
            switch kind {
            case .work:
                var row = rows[name] ?? QueueRow(queue: name)
                row.ready = q.ready
                row.unacknowledged = q.unacknowledged
                row.consumers = q.consumers
                row.publishRate = q.publishRate
                row.deliverRate = q.deliverRate
                row.ackRate = q.ackRate
                row.recentWaitMilliseconds = waits[name]
                row.missing = false
                row.setReplicas(leader: q.leader, members: q.members, online: q.online)
                if let head = q.headMessageTimestamp, q.ready > 0 {
                    row.oldestAgeSeconds = max(0, at.timeIntervalSince(head))
                    row.oldestAgeBasis = .broker
                }
                rows[name] = row
            case .dead:
                var row = rows[name] ?? QueueRow(queue: name, missing: true)
                row.dead = q.ready + q.unacknowledged
                rows[name] = row
            case .delay:
                delayed += q.ready + q.unacknowledged
            case .order:
                // A queue's ordered tasks wait in its partitions: counted with the queue's own.
                ordered[name, default: (0, 0)].ready += q.ready
                ordered[name, default: (0, 0)].unacknowledged += q.unacknowledged
            case .coordinator, .isolation, .reply:
                // Isolation queues hold the few suspects of a supervised worker's crash;
                // reply queues, results on their way to a producer.
                break
            }
        }
        for (name, counts) in ordered {
            var row = rows[name] ?? QueueRow(queue: name, missing: true)
            row.ready = (row.ready ?? 0) + counts.ready
            row.unacknowledged = (row.unacknowledged ?? 0) + counts.unacknowledged
            rows[name] = row
        }
        for name in only where rows[name] == nil { rows[name] = QueueRow(queue: name, missing: true) }
        var list = rows.values.filter { only.isEmpty || only.contains($0.queue) }
        // A dead queue without its work queue (deleted by hand) still shows, flagged.
        list.sort { $0.queue < $1.queue }
        return QueueOverview(prefix: topology.prefix, queues: list, delayed: delayed, ratesAvailable: true,
                             ratesUnavailableReason: nil, at: at)
    }
}
