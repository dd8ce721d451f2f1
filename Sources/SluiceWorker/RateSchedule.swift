#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SluiceCore

/// When each rate-limited delivery may start, and which live workers
/// share an ordered queue (pure: fed heartbeats and a clock).
///
/// A worker holds a share of each limit: the limit divided by the live
/// workers that hold the same one (itself and the peers whose heartbeats
/// list its key, are `running`, and were heard within three of their
/// intervals). Starts are spaced evenly at the share: a delivery starts at
/// the later of now and the next free start of each of its limits, which
/// then moves on by one spacing from when it really started. Nothing is
/// banked while idle, so any window of `w` seconds holds at most
/// `w × share + 1` starts per worker.
struct RateSchedule: Sendable {
    typealias Instant = ContinuousClock.Instant

    private struct Peer: Sendable {
        var keys: Set<String>
        var running: Bool
        var silenceLimit: Duration
        var heardAt: Instant
        var sentAt: Double
    }

    /// This worker's id and start: its own beats are not a peer (two workers
    /// may share an id, `host:pid`, in containers of one pod).
    let me: String
    let myStart: Date?
    /// Limit keys (``RateLimit/key``) to starts per second across the fleet.
    let limits: [String: Double]
    /// Keys followed for their members only: `order:<queue>` for the
    /// ordered queues this worker consumes (``orderKey(_:)``).
    let rosterKeys: Set<String>
    private var peers: [String: Peer] = [:]
    /// The next free start per key.
    private var next: [String: Instant] = [:]
    /// Live workers per key (this one included), valid until `countsValidUntil`.
    private var counts: [String: Int] = [:]
    private var countsValidUntil: Instant?

    init(me: String, startedAt: Date? = nil, limits: [RateLimit], orderedQueues: [String] = []) {
        self.me = me
        self.myStart = startedAt
        self.rosterKeys = Set(orderedQueues.map(Self.orderKey))
        var byKey: [String: Double] = [:]
        for limit in limits { byKey[limit.key] = min(byKey[limit.key] ?? .infinity, limit.perSecond) }
        self.limits = byKey
    }

    /// Records a peer's heartbeat heard at `now`.
    mutating func record(_ beat: WorkerHeartbeat, now: Instant) {
        guard !isMine(beat) else { return }
        let id = Self.memberID(worker: beat.worker, startedAt: beat.startedAt)
        let sentAt = beat.at.timeIntervalSinceReferenceDate
        if let known = peers[id], known.sentAt > sentAt { return }  // out of order
        let interval = min(3600, max(0.05, beat.intervalSeconds ?? 5))
        let keys = Set(beat.rateLimits?.keys.filter { limits[$0] != nil } ?? [])
            .union((beat.orderedQueues ?? []).map(Self.orderKey).filter(rosterKeys.contains))
        peers[id] = Peer(keys: keys,
                                  running: (beat.state ?? "running") == "running",
                                  silenceLimit: .milliseconds(Int64(3 * interval * 1000)), heardAt: now, sentAt: sentAt)
        // Forget workers long gone (their ids never come back: host and pid).
        peers = peers.filter { now - $0.value.heardAt <= $0.value.silenceLimit * 20 }
        countsValidUntil = nil
    }

    /// Whether `beat` is this worker's own.
    func isMine(_ beat: WorkerHeartbeat) -> Bool {
        beat.worker == me && (myStart == nil || abs(beat.startedAt.timeIntervalSince(myStart!)) < 0.002)
    }

    /// The roster key of an ordered queue.
    static func orderKey(_ queue: String) -> String { "order:\(queue)" }

    /// How every worker names a worker in the roster: its id and its start
    /// to the millisecond (as heartbeats carry it), so all compute the same.
    static func memberID(worker: String, startedAt: Date) -> String {
        "\(worker) \(Int64((startedAt.timeIntervalSince1970 * 1000).rounded()))"
    }

    /// This worker's member id.
    var myID: String { Self.memberID(worker: me, startedAt: myStart ?? Date(timeIntervalSince1970: 0)) }

    /// Live workers holding `key` (this one included), by member id, sorted.
    func members(holding key: String, now: Instant) -> [String] {
        var out = [myID]
        for (id, peer) in peers where peer.running && peer.keys.contains(key) && now <= peer.heardAt + peer.silenceLimit {
            out.append(id)
        }
        return out.sorted()
    }

    /// Live workers holding `key`, this one included.
    mutating func workers(holding key: String, now: Instant) -> Int {
        refreshCounts(now: now)
        return counts[key] ?? 1
    }

    /// This worker's starts per second for `key`; nil if it has no such limit.
    mutating func share(of key: String, now: Instant) -> Double? {
        guard let limit = limits[key] else { return nil }
        return limit / Double(workers(holding: key, now: now))
    }

    /// Reserves a start for a delivery counted by `keys` (those without a
    /// limit here are ignored): when it may start, or nil if no limit applies.
    mutating func reserve(_ keys: [String], now: Instant) -> Instant? {
        var start: Instant?
        for key in keys where limits[key] != nil {
            start = max(start ?? now, next[key] ?? now)
        }
        guard let start else { return nil }
        advance(keys, past: start, now: now)
        return start
    }

    /// Records that a reserved start happened at `now`, perhaps late (a
    /// stalled process): the next start is a spacing after it, so that
    /// starts delayed together do not run as a burst.
    mutating func started(_ keys: [String], now: Instant) {
        advance(keys, past: now, now: now)
    }

    private mutating func advance(_ keys: [String], past start: Instant, now: Instant) {
        for key in keys {
            guard let share = share(of: key, now: now) else { continue }
            // (A share of a limit of at least one a day: the spacing fits in Int64 nanoseconds.)
            next[key] = max(next[key] ?? start, start + .nanoseconds(Int64(min(1e18, (1e9 / share).rounded()))))
        }
    }

    /// Counts live peers per key; valid until the first of them could fall silent.
    private mutating func refreshCounts(now: Instant) {
        if let until = countsValidUntil, now < until { return }
        var counts = Dictionary(uniqueKeysWithValues: limits.keys.map { ($0, 1) })
        var until: Instant = now + .seconds(60)
        for peer in peers.values where peer.running {
            let silentAfter = peer.heardAt + peer.silenceLimit
            guard now <= silentAfter else { continue }
            until = min(until, silentAfter)
            for key in peer.keys { counts[key, default: 1] += 1 }
        }
        self.counts = counts
        countsValidUntil = until
    }
}
