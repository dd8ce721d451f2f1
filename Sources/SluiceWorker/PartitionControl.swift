import SluiceCore
import Synchronization

/// Which ordered partitions this worker should be the active consumer of,
/// and the consumers it holds on them, so that it can give a partition up.
///
/// Every ordered worker subscribes to every partition; the broker makes one
/// consumer of each active (the first) and keeps the others waiting. To
/// share the partitions out, each worker owns some (round robin over the
/// live ordered workers, sorted by member id, which all of them compute
/// alike) and gives up the partitions it does not own that it is seen to be
/// active on (it had a delivery from them) as soon as it runs nothing from
/// them: it closes that consumer's channel and subscribes again, at the
/// back of the line, so that the partition passes to the next waiting
/// worker, until its owner has it. A consumer is never cancelled, and
/// never closed while a task of it runs (see `Worker`).
final class PartitionControl: Sendable {
    private struct Entry {
        var consumer: BrokerConsumer
        /// Deliveries from it begun and not yet ended (more than one only
        /// after a reconnect: a stale one and its redelivery).
        var running = 0
        /// It had a delivery since it subscribed: it is (or was) the active consumer.
        var hadDelivery = false
        /// Give it up once nothing of it runs.
        var yieldWhenIdle = false
        /// Who it is given up to (for the log).
        var owner: String?
        /// Closed to give the partition up: subscribe again.
        var yielded = false
        var lastYield: ContinuousClock.Instant?
    }

    private let entries = Mutex<[String: Entry]>([:])

    static func key(_ queue: String, _ partition: Int) -> String { "\(queue)#\(partition)" }

    /// The partition's owner among `members` (sorted member ids): round
    /// robin, rotated per queue by FNV-1a-32 of the queue's name modulo
    /// 1024, so that queues do not all start at the same member.
    static func owner(queue: String, partition: Int, members: [String]) -> String? {
        guard !members.isEmpty else { return nil }
        var hash: UInt32 = 0x811c_9dc5
        for byte in queue.utf8 { hash = (hash ^ UInt32(byte)) &* 0x0100_0193 }
        return members[(partition + Int(hash % 1024)) % members.count]
    }

    /// A new consumer of the partition (at start, or subscribed again);
    /// deliveries of the one before that still run are still counted.
    func register(_ key: String, _ consumer: BrokerConsumer) {
        entries.withLock { e in
            e[key] = Entry(consumer: consumer, running: e[key]?.running ?? 0, lastYield: e[key]?.lastYield)
        }
    }

    /// A delivery arrived: it may start unless the partition was given up
    /// (its channel closed: the broker has taken the delivery back and may
    /// already have handed it to another worker). Atomic with giving up: a
    /// partition is never given up with a delivery started.
    func beginDelivery(_ key: String) -> Bool {
        entries.withLock { e in
            guard let entry = e[key], !entry.yielded else { return false }
            e[key]!.running += 1
            e[key]!.hadDelivery = true
            return true
        }
    }

    /// A delivery begun by ``beginDelivery(_:)`` is settled (or dropped);
    /// returns the consumer to close, and whom to, if the partition is to
    /// be given up now.
    func endDelivery(_ key: String) -> (consumer: BrokerConsumer, owner: String?)? {
        entries.withLock { e -> (consumer: BrokerConsumer, owner: String?)? in
            guard e[key] != nil else { return nil }
            e[key]!.running = max(0, e[key]!.running - 1)
            guard e[key]!.running == 0, e[key]!.yieldWhenIdle, !e[key]!.yielded else { return nil }
            return (yield(&e[key]!, now: .now), e[key]!.owner)
        }
    }

    /// Gives the partition up if this worker is its active consumer: now
    /// (returns the consumer to close) if nothing of it runs, else when
    /// its running delivery ends. At most once per `every`. `owner`: whom
    /// to, for the log.
    func giveUp(_ key: String, every: Duration, to owner: String? = nil, now: ContinuousClock.Instant = .now) -> BrokerConsumer? {
        entries.withLock { e -> BrokerConsumer? in
            guard let entry = e[key], entry.hadDelivery, !entry.yielded,
                  entry.lastYield.map({ now - $0 >= every }) ?? true else { return nil }
            guard entry.running == 0 else {
                e[key]!.yieldWhenIdle = true
                e[key]!.owner = owner
                return nil
            }
            return yield(&e[key]!, now: now)
        }
    }

    /// Keeps the partition after all (this worker owns it now).
    func keep(_ key: String) {
        entries.withLock { $0[key]?.yieldWhenIdle = false }
    }

    private func yield(_ entry: inout Entry, now: ContinuousClock.Instant) -> BrokerConsumer {
        entry.yielded = true
        entry.yieldWhenIdle = false
        entry.lastYield = now
        return entry.consumer
    }

    /// Whether the partition's consumer was closed to give it up.
    func isYielded(_ key: String) -> Bool { entries.withLock { $0[key]?.yielded == true } }

    /// Whether the partition's consumer ended because it was given up (and clears it).
    func takeYielded(_ key: String) -> Bool {
        entries.withLock { e in
            guard e[key]?.yielded == true else { return false }
            e[key]!.yielded = false
            return true
        }
    }

    /// The consumers now held, for shutdown.
    var consumers: [BrokerConsumer] { entries.withLock { $0.values.map(\.consumer) } }
}
