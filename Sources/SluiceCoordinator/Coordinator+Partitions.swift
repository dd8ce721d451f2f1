import Foundation
import Logging
import SluiceCore

/// Several active coordinators (a store with more than one partition):
/// each leads some partitions, every partition has a lease and an event
/// queue of its own, and the coordinators balance the partitions among
/// themselves.
///
/// Every look (each fifth of the lease TTL) a coordinator renews its
/// membership lease and the leases of the partitions it leads, counts the
/// live coordinators (unexpired membership leases), and aims at its share,
/// `ceil(partitions / coordinators)`: it gives up partitions above it (the
/// highest numbers first) and takes free ones below it. A coordinator that
/// joins finds none free; the others see one more member and give theirs
/// up at their next look, and it takes them at its next. One that stops
/// releases its leases, and the others take them at their next look; one
/// that dies leaves them to expire (one TTL).
extension Coordinator {
    func partitionLeaseName(_ partition: Int) -> String { "\(partitionLeasePrefix)\(partition)" }
    var partitionLeasePrefix: String { "coordinator:\(broker.topology.prefix):p" }
    var memberLeasePrefix: String { "coordinators:\(broker.topology.prefix):" }

    /// Joins the coordinators sharing the store's `count` partitions, and
    /// joins again under a new holder name after losing a lease.
    func sharePartitions(of count: Int) async throws {
        var term = 1
        while true {
            let holder = term == 1 ? configuration.holder : "\(configuration.holder)/\(term)"
            do {
                try await leadPartitions(of: count, holder: holder)
                return
            } catch where Self.isLeaseLoss(error) {
                await engine.dropCachedRuns()
                activeFlag.set(nil)
                // What this term still holds goes at once; what it lost is another's.
                await releaseLeaseAtExit()
                try await engine.lead(partitions: [], of: count, fence: StoreFence(leases: [:], buckets: []))
                try await engine.forgetRuns()
                logger.warning("\(error); joining again", metadata: ["holder": "\(holder)"])
                term += 1
            }
        }
    }

    /// One term: the loops every coordinator runs whatever it leads (the
    /// relay, timers, schedules and retention read only the led partitions'
    /// rows), and the balancing loop that starts and stops partitions.
    func leadPartitions(of count: Int, holder: String) async throws {
        activeFlag.setCandidate(holder)
        // Nothing led yet: the loops read no partition's rows.
        try await engine.lead(partitions: [], of: count, fence: StoreFence(leases: [:], buckets: []))
        try await engine.forgetRuns()
        leadership.begin(holder: holder, member: memberLeasePrefix + holder, count: count)
        let consumers = PartitionConsumers()
        defer { consumers.cancelAll() }
        logger.info("coordinator sharing partitions", metadata: [
            "holder": "\(holder)", "prefix": "\(broker.topology.prefix)", "partitions": "\(count)"])
        try await runLoops(partitions: count, [{ try await self.balancePartitions(of: count, holder: holder, consumers: consumers) }])
    }

    /// Looks every fifth of the TTL: renews, counts, gives up or takes partitions.
    func balancePartitions(of count: Int, holder: String, consumers: PartitionConsumers) async throws {
        let ttl = configuration.leaseTTL
        let member = memberLeasePrefix + holder
        var held: Set<Int> = []
        var lastConfirmed = ContinuousClock.now
        var failures = 0
        while true {
            if consumers.lost { throw LeaseLost(holder: holder) }
            do {
                let now = Date()
                _ = try await Self.within(ttl / 3, "renewing the coordinator's membership") { [store] in
                    try await store.acquireLease(member, holder: holder, now: now, ttl: ttl)
                }
                for partition in held.sorted() {
                    let name = partitionLeaseName(partition)
                    let renewed = try await Self.within(ttl / 3, "renewing a partition lease") { [store] in
                        try await store.renewLease(name, holder: holder, now: now, ttl: ttl)
                    }
                    guard renewed else { throw LeaseLost(holder: holder) }
                }
                lastConfirmed = .now
                if failures > 0 { logger.info("the store answers again", metadata: ["after": "\(failures) failed attempts"]) }
                failures = 0
                // Every store call is bounded: one that hangs must not stop the renewals.
                let memberLeases = try await Self.within(ttl / 3, "counting the coordinators") { [store, memberLeasePrefix] in
                    try await store.leases(prefix: memberLeasePrefix, now: now)
                }
                let members = max(1, memberLeases.count)
                let share = (count + members - 1) / members
                if held.count > share {
                    for partition in held.sorted().suffix(held.count - share) {
                        try await stopLeading(partition, of: count, holder: holder, held: &held, consumers: consumers)
                    }
                } else if held.count < share {
                    let taken = try await Self.within(ttl / 3, "listing the partition leases") { [store, partitionLeasePrefix] in
                        try await store.leases(prefix: partitionLeasePrefix, now: now)
                    }
                    // A lease held under this holder but not led here: an acquire that timed out after it committed.
                    let free = (0..<count).filter { !held.contains($0) && [nil, holder].contains(taken[partitionLeaseName($0)]) }.shuffled()
                    for partition in free.prefix(share - held.count) {
                        let name = partitionLeaseName(partition)
                        let acquired = try await Self.within(ttl / 3, "taking a partition lease") { [store] in
                            try await store.acquireLease(name, holder: holder, now: now, ttl: ttl)
                        }
                        if acquired { try await startLeading(partition, of: count, holder: holder, held: &held, consumers: consumers) }
                    }
                }
            } catch {
                if error is CancellationError || Task.isCancelled { throw CancellationError() }
                if Self.isLeaseLoss(error) { throw error }
                // After a whole TTL without hearing from the store, another
                // coordinator may have taken these partitions: start over.
                if ContinuousClock.now - lastConfirmed >= ttl { throw LeaseLost(holder: holder, unconfirmed: true) }
                if failures % 50 == 0 {
                    logger.warning("cannot reach the store to renew the partition leases; trying again",
                                   metadata: ["error": "\(error)", "attempts": "\(failures + 1)"])
                }
                failures += 1
            }
            await consumers.wake.wait(upTo: ttl / 5)
        }
    }

    /// The fence for the partitions in `held`: their leases, their buckets.
    func fence(_ held: Set<Int>, of count: Int, holder: String) -> StoreFence {
        var leaseOfBucket: [Int: String] = [:]
        for partition in held {
            for bucket in Topology.buckets(ofPartition: partition, of: count) { leaseOfBucket[bucket] = partitionLeaseName(partition) }
        }
        return StoreFence(leases: Dictionary(uniqueKeysWithValues: held.map { (partitionLeaseName($0), holder) }),
                          buckets: Set(leaseOfBucket.keys), leaseOfBucket: leaseOfBucket)
    }

    /// Just acquired: fence it, consume its events, publish its outbox rows.
    func startLeading(_ partition: Int, of count: Int, holder: String, held: inout Set<Int>, consumers: PartitionConsumers) async throws {
        held.insert(partition)
        leadership.set(partition, lease: partitionLeaseName(partition))
        try await engine.lead(partitions: held, of: count, fence: fence(held, of: count, holder: holder))
        consumers.start(partition) {
            do {
                try await self.restarting("events p\(partition)") { try await self.consumeEvents(partition: partition, of: count) }
            } catch where Self.isLeaseLoss(error) {
                consumers.markLost()
            } catch {
                // Cancelled: the partition was given up, or the term ended.
            }
        }
        activeFlag.set(holder)
        // Rows an earlier leader left unsent are in the store.
        outboxChanged()
        logger.info("leading a partition", metadata: ["partition": "\(partition)", "of": "\(count)", "holder": "\(holder)"])
    }

    /// Gives a partition up: its consumer stops (unacknowledged events go
    /// back to the queue), no commit of its runs is in progress or starts
    /// here, and then its lease is released for another coordinator.
    func stopLeading(_ partition: Int, of count: Int, holder: String, held: inout Set<Int>, consumers: PartitionConsumers) async throws {
        await consumers.stop(partition)
        held.remove(partition)
        try await engine.lead(partitions: held, of: count, fence: fence(held, of: count, holder: holder))
        leadership.set(partition, lease: nil)
        let name = partitionLeaseName(partition)
        try await Self.within(configuration.leaseTTL / 3, "releasing a partition lease") { [store] in
            try await store.releaseLease(name, holder: holder)
        }
        if held.isEmpty { activeFlag.set(nil) }
        logger.info("gave a partition up to another coordinator", metadata: ["partition": "\(partition)", "of": "\(count)"])
    }
}
