#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SluiceCore
import Synchronization

/// A worker's rate limits and roster of peers: its ``RateSchedule``,
/// shared by its consumers and fed by the heartbeat follower (also for
/// the ordered queues' partitions, ``PartitionControl``).
final class RateGate: Sendable {
    typealias Instant = ContinuousClock.Instant

    private let schedule: Mutex<RateSchedule>
    /// Task names with a limit, to their key (made once, not per delivery).
    private let taskKeys: [String: String]
    /// Limited queues (base names) to their key.
    private let queueKeys: [String: String]
    /// Fired when the worker hears its own heartbeat: the roster's round trip is done.
    let heardSelf = ShutdownSignal()

    init(me: String, startedAt: Date? = nil, limits: [RateLimit], orderedQueues: [String] = []) {
        schedule = Mutex(RateSchedule(me: me, startedAt: startedAt, limits: limits, orderedQueues: orderedQueues))
        var tasks: [String: String] = [:], queues: [String: String] = [:]
        for limit in limits {
            switch limit.scope {
            case .task(let name): tasks[name] = limit.key
            case .queue(let name): queues[name] = limit.key
            }
        }
        taskKeys = tasks
        queueKeys = queues
    }

    /// The key of a limited base queue, nil if it has none.
    func queueKey(_ queue: String) -> String? { queueKeys[queue] }

    /// The limits a delivery of `taskName` from a queue with `queueKey`
    /// counts toward; nil if none applies to it.
    func keys(taskName: String?, queueKey: String?) -> [String]? {
        switch (taskName.flatMap { taskKeys[$0] }, queueKey) {
        case (nil, nil): nil
        case (let task?, nil): [task]
        case (nil, let queue?): [queue]
        case (let task?, let queue?): [task, queue]
        }
    }

    /// When the next delivery under `keys` may start (reserved).
    func reserve(_ keys: [String]) -> Instant? { schedule.withLock { $0.reserve(keys, now: .now) } }

    /// A reserved start happened now.
    func started(_ keys: [String]) { schedule.withLock { $0.started(keys, now: .now) } }

    func record(_ beat: WorkerHeartbeat) {
        let mine = schedule.withLock { s in
            if s.isMine(beat) { return true }
            s.record(beat, now: .now)
            return false
        }
        if mine { heardSelf.fire() }
    }

    /// Starts per second this worker may make under `key` now.
    func share(of key: String) -> Double? { schedule.withLock { $0.share(of: key, now: .now) } }

    /// Live workers holding `key`, this one included.
    func workers(holding key: String) -> Int { schedule.withLock { $0.workers(holding: key, now: .now) } }

    /// The live ordered workers of `queue` (this one included), by member id, sorted.
    func orderedMembers(_ queue: String) -> [String] {
        schedule.withLock { $0.members(holding: RateSchedule.orderKey(queue), now: .now) }
    }

    /// This worker's member id.
    var myID: String { schedule.withLock { $0.myID } }

    /// Every limit's key and starts per second across the fleet, for heartbeats.
    var limits: [String: Double] { schedule.withLock { $0.limits } }
}
