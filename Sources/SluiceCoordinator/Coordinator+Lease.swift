import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SluiceCore
import SluiceWorkflow
import Synchronization

/// The lease: standing by, taking it, renewing it, and the loops a
/// leading coordinator runs (each restarted alone when it fails).
extension Coordinator {
    /// Frees the lease for a standby at once, if the store answers soon; a
    /// store that is away only delays the stop, and the lease then expires.
    func releaseLeaseAtExit() async {
        let holder = activeFlag.lastHolder ?? configuration.holder
        let partitions = leadership.takeAll()
        _ = try? await Self.within(min(configuration.leaseTTL / 2, .seconds(3)), "releasing the lease") { [store, leaseName] in
            if let partitions {
                // Partitions first: the others take them at their next look.
                for name in partitions.leases { try await store.releaseLease(name, holder: partitions.holder) }
                try await store.releaseLease(partitions.member, holder: partitions.holder)
            } else {
                try await store.releaseLease(leaseName, holder: holder)
            }
        }
    }

    /// The store's partition count, asked until the store answers (it may be
    /// away at start, like a lease).
    func storePartitionCount() async throws -> Int {
        var failures = 0
        while true {
            do {
                let count = try await store.partitionCount(proposed: configuration.partitions)
                guard Topology.isValidPartitionCount(count) else {
                    throw StoreError(.invalidArgument, "the store's partition count is \(count); it must divide 64")
                }
                if count != configuration.partitions && configuration.partitions != 1 {
                    logger.warning("the store was created with another partition count; it keeps it", metadata: [
                        "partitions": "\(count)", "asked": "\(configuration.partitions)"])
                }
                return count
            } catch let error as StoreError where error.code == .invalidArgument {
                throw error
            } catch {
                if error is CancellationError || Task.isCancelled { throw CancellationError() }
                if failures % 50 == 0 {
                    logger.warning("cannot reach the store to read its partition count; trying again",
                                   metadata: ["error": "\(error)", "attempts": "\(failures + 1)"])
                }
                failures += 1
                try await Task.sleep(for: configuration.leaseTTL / 5)
            }
        }
    }

    /// Stands by until it holds the lease, leads while it holds it, and
    /// stands by again if another coordinator takes it over. The decisions
    /// are ``LeaseStateMachine``'s; this carries them out.
    func standByAndLead() async throws {
        var lease = LeaseStateMachine(holder: configuration.holder, ttl: configuration.leaseTTL)
        while true {
            let holder = lease.holder
            // Named before asking: a shutdown that cuts the answer off still releases it.
            activeFlag.setCandidate(holder)
            standingBy: while true {
                do {
                    if let stale = lease.unconfirmedHolder {
                        try await store.releaseLease(leaseName, holder: stale)
                        lease.staleReleased()
                    }
                    let acquired = try await store.acquireLease(leaseName, holder: holder, now: Date(), ttl: configuration.leaseTTL)
                    let decision = lease.acquireAnswered(acquired, now: .now)
                    if let failed = decision.storeIsBackAfter {
                        logger.info("the store answers again", metadata: ["after": "\(failed) failed attempts"])
                    }
                    if decision.lead { break standingBy }
                    if decision.announce { logger.info("standing by: another coordinator is active", metadata: ["holder": "\(holder)"]) }
                } catch {
                    if error is CancellationError || Task.isCancelled { throw CancellationError() }
                    // A store that is away (a failover) is waited for, not a reason to exit.
                    if let attempts = lease.acquireFailed() {
                        logger.warning("cannot reach the store to take the lease; trying again",
                                       metadata: ["error": "\(error)", "attempts": "\(attempts)"])
                    }
                }
                try await Task.sleep(for: lease.attemptInterval)
            }
            // From here on, every write checks that this term still holds the lease.
            store.setFence(StoreFence(lease: leaseName, holder: holder))
            // Another coordinator may have changed runs since this one last led.
            try await engine.forgetRuns()
            activeFlag.set(holder)
            logger.info("coordinator active", metadata: ["holder": "\(holder)", "prefix": "\(broker.topology.prefix)"])
            do {
                try await lead(lease)
                return
            } catch where Self.isLeaseLoss(error) {
                activeFlag.set(nil)
                lease.standBy(unconfirmed: (error as? LeaseLost)?.unconfirmed == true)
                // Reads while standing by come from the store, which the new active one writes.
                try await engine.forgetRuns()
                logger.warning("\(error); standing by", metadata: ["holder": "\(holder)"])
            }
        }
    }

    /// Whether `error` says that another coordinator holds the lease now.
    static func isLeaseLoss(_ error: any Error) -> Bool {
        error is LeaseLost || (error as? StoreError)?.code == .leaseLost
    }

    /// Runs workflows until the lease is lost or shutdown cancels the loops.
    func lead(_ lease: LeaseStateMachine) async throws {
        // The coordinator queue is declared by each loop that needs it when it
        // starts, so that a broker that is away now delays them instead of failing the start.
        try await runLoops(partitions: 1, [
            { try await self.renewLease(lease) },
            { try await self.restarting("events") { try await self.consumeEvents() } },
        ])
    }

    /// The loops of a leading coordinator, with `own` (what leads: the lease
    /// renewal and event consumer, or the partition balancing): dead
    /// letters, the outbox relay, timers, schedules, retention. The first to
    /// end (a lost lease, or cancellation at shutdown) ends them all.
    func runLoops(partitions count: Int, _ own: [@Sendable () async throws -> Void]) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for body in own { group.addTask { try await body() } }
            group.addTask { try await self.restarting("dead letters") { try await self.consumeDeadLetters(partitions: count) } }
            group.addTask {
                try await self.restarting("outbox") {
                    // Every event queue bound before step tasks go out, so that their outcomes have a queue to land in.
                    try await self.prepareEventQueues(partitions: count)
                    try await self.relayOutbox()
                }
            }
            group.addTask { try await self.restarting("timers") { try await self.fireTimers() } }
            group.addTask { try await self.restarting("schedules") { try await self.fireSchedules() } }
            if let retention = configuration.retention {
                group.addTask { try await self.pruneRuns(keeping: retention) }
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    /// Runs one of the leader's loops, and starts it again after an error
    /// other than a lost lease or cancellation: a store or broker that is
    /// away for a while (a PostgreSQL failover, a dropped connection) is
    /// waited out with a capped backoff instead of ending the coordinator.
    /// Nothing is lost meanwhile: events stay in their queue, step tasks in
    /// the outbox, timers and schedules in the store.
    func restarting(_ loop: String, _ body: @Sendable () async throws -> Void) async throws {
        let restarts = Counter(label: "sluice_coordinator_loop_restarts_total", dimensions: [("loop", loop)])
        var failures = 0
        while true {
            let started = ContinuousClock.now
            let reason: String
            do {
                try await body()
                if Task.isCancelled { return }
                // A consumer the broker cancelled (its queue deleted, say) ends without an error.
                reason = "it ended"
            } catch where Self.isLeaseLoss(error) {
                throw error
            } catch {
                if error is CancellationError || Task.isCancelled { throw CancellationError() }
                reason = "\(error)"
            }
            // A loop that ran a while before it failed starts from the short delay again.
            if ContinuousClock.now - started > Self.restartDelayCap * 2 { failures = 0 }
            let delay = Self.restartDelay(afterFailures: failures)
            failures += 1
            restarts.increment()
            logger.warning("a coordinator loop stopped; starting it again", metadata: [
                "loop": "\(loop)", "error": "\(reason)", "in": "\(delay)"])
            try await Task.sleep(for: delay)
        }
    }

    static let restartDelayCap = Duration.seconds(30)

    /// 0.5 s, 1 s, 2 s ... up to 30 s.
    static func restartDelay(afterFailures failures: Int) -> Duration {
        min(.milliseconds(500) * (1 << min(failures, 10)), restartDelayCap)
    }

    /// Renews the lease every third of its TTL until it is lost.
    func renewLease(_ leading: LeaseStateMachine) async throws {
        var lease = leading
        let holder = lease.holder
        while true {
            try await Task.sleep(for: lease.renewInterval)
            let renewed: Bool
            do {
                renewed = try await Self.within(lease.renewBound(now: .now), "renewing the lease") { [store, leaseName, configuration] in
                    try await store.renewLease(leaseName, holder: holder, now: Date(), ttl: configuration.leaseTTL)
                }
            } catch {
                if error is CancellationError || Task.isCancelled { throw CancellationError() }
                // After a whole TTL without a renewal this coordinator cannot know
                // whether it still leads (a standby that reaches the store may have
                // taken over): it stands by, and takes the lease again once the store is back.
                switch lease.renewFailed(now: .now) {
                case .retry:
                    logger.warning("could not renew the coordinator lease; trying again", metadata: ["error": "\(error)"])
                    continue
                case .standBy(let unconfirmed):
                    await engine.dropCachedRuns()
                    activeFlag.set(nil)
                    throw LeaseLost(holder: holder, unconfirmed: unconfirmed)
                }
            }
            guard renewed else {
                _ = lease.renewRefused()
                await engine.dropCachedRuns()
                activeFlag.set(nil)
                throw LeaseLost(holder: holder)
            }
            lease.renewed(now: .now)
        }
    }

    struct TimedOut: Error, CustomStringConvertible {
        var what: String
        var after: Duration
        var description: String { "\(what) took longer than \(after)" }
    }

    /// `body`'s result, or `TimedOut` once `limit` has passed (`body` is then
    /// cancelled and not waited for: a call stuck on a dead connection may ignore it).
    static func within<T: Sendable>(_ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        switch await Abandonable.run(limit, body) {
        case .finished(let result): return try result.get()
        case .timedOut: throw TimedOut(what: what, after: limit)
        case .cancelled: throw CancellationError()
        }
    }
}
