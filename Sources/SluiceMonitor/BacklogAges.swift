public import Foundation

/// The age of each queue's oldest ready task (pure: fed observations and a clock).
///
/// RabbitMQ reports a queue's head timestamp for classic queues only; the
/// quorum queues Sluice uses (3.10) do not, and peeking at the head would
/// count as a delivery. So the age is bounded from what is known: in a FIFO
/// queue a ready task was enqueued after
/// - the newest task any worker has received from it (heartbeats'
///   ``SluiceCore/WorkerHeartbeat/newestTaken``), and
/// - the last time the queue was seen with nothing ready.
///
/// The later of the two gives the age as an upper bound, off by at most the
/// time since that newest delivery was reported (a heartbeat interval) while
/// workers run. With neither known yet, the age counts from when this
/// monitor first saw the queue, a lower bound (``Age/basis`` `.watching`).
/// Tasks back from a retry's delay, or put back by a crashed worker, can be
/// older than the bound says.
public struct BacklogAges: Sendable {
    /// What an age was taken from.
    public enum Basis: String, Sendable, Codable, Hashable {
        /// The broker's head timestamp: exact.
        case broker
        /// The newest task a worker received: an upper bound.
        case workers
        /// The last time the queue had nothing ready: an upper bound.
        case empty
        /// Since this monitor first saw the queue: a lower bound.
        case watching
    }

    public struct Age: Sendable, Hashable {
        public var seconds: Double
        public var basis: Basis
        public init(seconds: Double, basis: Basis) {
            self.seconds = seconds
            self.basis = basis
        }
    }

    private struct Known {
        var firstSeen: Date
        var lastEmpty: Date?
        var newestTaken: Date?
    }

    private var queues: [String: Known] = [:]

    public init() {}

    /// Records what workers report (keeps the newest per queue, so that it
    /// outlives the workers: with none running, the age goes on growing from it).
    public mutating func record(newestTaken: [String: Date], now: Date = Date()) {
        // One from a clock far ahead would pin the age at 0 for good.
        for (queue, date) in newestTaken where date <= now.addingTimeInterval(60) {
            var known = queues[queue] ?? Known(firstSeen: now)
            if date > (known.newestTaken ?? .distantPast) { known.newestTaken = date }
            queues[queue] = known
        }
    }

    /// Observes `queue` with `ready` tasks at `now` and returns the age of its
    /// oldest ready one: 0 when none is ready, nil when the count is unknown.
    public mutating func observe(_ queue: String, ready: Int?, headTimestamp: Date? = nil, now: Date = Date()) -> Age? {
        guard let ready else { return nil }
        var known = queues[queue] ?? Known(firstSeen: now)
        defer { queues[queue] = known }
        if ready == 0 {
            known.lastEmpty = now
            return Age(seconds: 0, basis: .empty)
        }
        if let headTimestamp { return Age(seconds: max(0, now.timeIntervalSince(headTimestamp)), basis: .broker) }
        let bounds: [(Date, Basis)] = [known.newestTaken.map { ($0, .workers) }, known.lastEmpty.map { ($0, .empty) }].compactMap { $0 }
        if let (after, basis) = bounds.max(by: { $0.0 < $1.0 }) {
            return Age(seconds: max(0, now.timeIntervalSince(after)), basis: basis)
        }
        return Age(seconds: max(0, now.timeIntervalSince(known.firstSeen)), basis: .watching)
    }
}
