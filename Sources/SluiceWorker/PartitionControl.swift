import SluiceCore
import Synchronization

/// Which ordered partitions this worker should be the active consumer of,
/// and the consumers it holds on them, so that it can give a partition up.
///
/// Every ordered worker subscribes to every partition; the broker makes one
/// consumer of each active (the first) and keeps the others waiting. To
/// share the partitions out, each worker owns some (round robin over the
/// live ordered workers, sorted by member id, which all of them compute
/// alike) and, every few seconds, gives up the partitions it does not own
/// while it runs nothing from them: it closes that consumer's channel and
/// subscribes again, at the back of the line, so that the partition passes
/// to the next waiting worker, until its owner has it. A consumer is never
/// cancelled and never closed while its task runs (see `Worker`).
final class PartitionControl: Sendable {
    private struct Entry {
        var consumer: BrokerConsumer
        /// A delivery from it is running or held.
        var busy = false
        /// Closed to give the partition up: subscribe again.
        var yielded = false
        var lastYield: ContinuousClock.Instant?
    }

    private let entries = Mutex<[String: Entry]>([:])

    static func key(_ queue: String, _ partition: Int) -> String { "\(queue)#\(partition)" }

    /// The partition's owner among `members` (sorted member ids).
    static func owner(queue: String, partition: Int, members: [String]) -> String? {
        guard !members.isEmpty else { return nil }
        // A per-queue rotation, so that queues do not all start at the same member.
        var hash: UInt32 = 0x811c_9dc5
        for byte in queue.utf8 { hash = (hash ^ UInt32(byte)) &* 0x0100_0193 }
        return members[(partition + Int(hash % 1024)) % members.count]
    }

    func register(_ key: String, _ consumer: BrokerConsumer) {
        entries.withLock { $0[key] = Entry(consumer: consumer, lastYield: $0[key]?.lastYield) }
    }

    /// A delivery arrived: it may start unless the partition was given up
    /// (its channel closed: the broker has taken the delivery back and may
    /// already have handed it to another worker). Atomic with
    /// ``yieldIfIdle(_:every:now:)``: a partition is never given up with a
    /// delivery started.
    func beginDelivery(_ key: String) -> Bool {
        entries.withLock { e in
            guard let entry = e[key], !entry.yielded else { return false }
            e[key]!.busy = true
            return true
        }
    }

    /// The delivery started by ``beginDelivery(_:)`` is settled.
    func endDelivery(_ key: String) {
        entries.withLock { $0[key]?.busy = false }
    }

    /// Marks the partition given up and returns its consumer to close, if
    /// it is idle and was not given up within `every`.
    func yieldIfIdle(_ key: String, every: Duration, now: ContinuousClock.Instant = .now) -> BrokerConsumer? {
        entries.withLock { e -> BrokerConsumer? in
            guard let entry = e[key], !entry.busy, !entry.yielded,
                  entry.lastYield.map({ now - $0 >= every }) ?? true else { return nil }
            e[key]!.yielded = true
            e[key]!.lastYield = now
            return entry.consumer
        }
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
