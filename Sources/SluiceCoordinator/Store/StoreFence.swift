import Synchronization

/// What a coordinator leads, which a store's writes are fenced with (see
/// ``WorkflowStore/setFence(_:)``): the leases it holds, by name with the
/// holder name of its term, and the buckets of the runs they cover (nil:
/// every run), which the coordinator's loops read (outbox, timers, retention).
public struct StoreFence: Sendable, Hashable {
    /// Lease name → holder. A fenced write checks every one.
    public var leases: [String: String]
    /// Buckets (``Topology/stepEventBucket(runID:)``) of the runs led; nil: all.
    public var buckets: Set<Int>?

    /// One lease over every run (one partition).
    public init(lease: String, holder: String) {
        self.init(leases: [lease: holder], buckets: nil)
    }

    public init(leases: [String: String], buckets: Set<Int>?) {
        self.leases = leases
        self.buckets = buckets
    }

    /// The buckets as a sorted list, for a query (nil: all).
    var bucketList: [Int]? { buckets.map { $0.sorted() } }
}

/// A store's current fence.
final class FenceBox: Sendable {
    private let value = Mutex<StoreFence?>(nil)
    var current: StoreFence? { value.withLock { $0 } }
    func set(_ fence: StoreFence?) { value.withLock { $0 = fence } }

    /// Fails unless every lease of `fence` is held by its holder, given the
    /// holders the store has for them (by name).
    static func check(_ fence: StoreFence, holders: [String: String]) throws {
        for (lease, holder) in fence.leases.sorted(by: { $0.key < $1.key }) where holders[lease] != holder {
            throw StoreError(.leaseLost, "coordinator \(holder) no longer holds the lease \(lease); another coordinator took over")
        }
    }
}
