import SluiceCore
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
    /// With several partitions: the lease that covers each bucket led. A
    /// commit then checks only the leases of the existing runs it changes
    /// (a new run, a message or a sent row needs none: nobody else can hold
    /// a new run, and the others are harmless twice).
    public var leaseOfBucket: [Int: String]?

    /// One lease over every run (one partition).
    public init(lease: String, holder: String) {
        self.init(leases: [lease: holder], buckets: nil)
    }

    public init(leases: [String: String], buckets: Set<Int>?, leaseOfBucket: [Int: String]? = nil) {
        self.leases = leases
        self.buckets = buckets
        self.leaseOfBucket = leaseOfBucket
    }

    /// The fence a commit changing the existing runs `runIDs` must pass:
    /// all of it, or with ``leaseOfBucket`` the leases of those runs only.
    /// Throws `leaseLost` for a run in a bucket not led.
    func scoped(toChangedRuns runIDs: [String]) throws -> StoreFence {
        guard let leaseOfBucket else { return self }
        var names: Set<String> = []
        for id in runIDs {
            guard let lease = leaseOfBucket[Topology.stepEventBucket(runID: id)] else {
                throw StoreError(.leaseLost, "run \(id) is in a partition this coordinator does not lead")
            }
            names.insert(lease)
        }
        return StoreFence(leases: leases.filter { names.contains($0.key) }, buckets: buckets, leaseOfBucket: leaseOfBucket)
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
