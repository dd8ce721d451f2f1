import DequeModule
import Synchronization

/// Outbox rows handed from the engine's commits straight to the relay, so
/// that the relay need not read back (and decode) what was just written.
/// The store stays the truth: the relay reads it when it starts leading,
/// when the feed overflowed, and when it was woken with nothing in the feed.
final class OutboxFeed: Sendable {
    /// Rows beyond this are left to the store, so a relay that cannot
    /// publish (broker away) holds no unbounded list.
    static let capacity = 20_000

    private struct State {
        /// A deque: the relay takes a batch from the front of up to 20,000
        /// rows many times a second (an array shifted every row left at each take).
        var entries = Deque<OutboxEntry>()
        var overflowed = false
        var storeChanged = false
        var revoked: [String] = []
        /// Published rows whose deletion failed with its commit.
        var undeleted: [Int64] = []
    }
    private let state = Mutex(State())
    /// Rung by every append and store change: the relay waits on it.
    let wake = Wake()

    func append(_ entries: [OutboxEntry]) {
        guard !entries.isEmpty else { return }
        state.withLock { s in
            if s.entries.count + entries.count > Self.capacity {
                s.overflowed = true
            } else {
                s.entries.append(contentsOf: entries)
            }
        }
        wake.signal()
    }

    /// Up to `max` rows, oldest first; `overflowed`: rows were dropped since
    /// the last take (read the store).
    func take(max: Int) -> (entries: [OutboxEntry], overflowed: Bool) {
        state.withLock { s in
            let taken = Array(s.entries.prefix(max))
            s.entries.removeFirst(taken.count)
            defer { s.overflowed = false }
            return (taken, s.overflowed)
        }
    }

    /// Step tasks of runs just cancelled, for the relay to revoke. Not in
    /// the store: a coordinator that dies before it sends them leaves the
    /// tasks to run, and their outcomes to be ignored (the run is cancelled).
    func revoke(_ taskIDs: [String]) {
        guard !taskIDs.isEmpty else { return }
        state.withLock { s in
            // Bounded like the rows; past it, the rest run and are ignored.
            s.revoked += taskIDs.prefix(max(0, Self.capacity - s.revoked.count))
        }
        wake.signal()
    }

    /// The task ids to revoke, taken.
    func takeRevoked() -> [String] {
        state.withLock { s in
            defer { s.revoked = [] }
            return s.revoked
        }
    }

    /// Rows the relay published whose deletion (``RunEngine/markSentSoon(_:)``)
    /// failed with its commit: the relay asks for it again. Not published
    /// again: the relay still counts them as published lately.
    func deletionFailed(_ ids: [Int64]) {
        guard !ids.isEmpty else { return }
        // As many as the relay remembers as published: past that, a row
        // would be published again anyway (when the relay forgets it).
        state.withLock { s in s.undeleted += ids.prefix(max(0, Self.undeletedCapacity - s.undeleted.count)) }
    }

    /// How many published rows whose deletion failed are kept to ask
    /// again: as many as the relay remembers as published (its `RecentIDs`).
    static let undeletedCapacity = 65_536

    /// The published rows whose deletion failed, taken.
    func takeUndeleted() -> [Int64] {
        state.withLock { s in
            defer { s.undeleted = [] }
            return s.undeleted
        }
    }

    /// Rows were written that the feed did not get (a schedule fired).
    func storeChanged() {
        state.withLock { $0.storeChanged = true }
        wake.signal()
    }

    /// Whether rows were written that the feed did not get, since last asked.
    func takeStoreChanged() -> Bool {
        state.withLock { s in
            defer { s.storeChanged = false }
            return s.storeChanged
        }
    }

    var isEmpty: Bool { state.withLock { $0.entries.isEmpty } }

    /// The id of the oldest row waiting (nil when none waits).
    var oldestID: Int64? { state.withLock { $0.entries.first?.id } }

    /// Rows waiting.
    var count: Int { state.withLock { $0.entries.count } }

    /// Forgets every row (when leading starts or stops: the store has them).
    /// Task ids to revoke are kept: the store does not have them, and a
    /// relay that starts late (its queues slow to declare) must still send
    /// the revocations of runs cancelled meanwhile.
    func clear() {
        state.withLock { s in s = State(revoked: s.revoked) }
    }
}
