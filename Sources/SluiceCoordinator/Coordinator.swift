import Foundation
public import Logging
import Metrics
public import ServiceLifecycle
public import SluiceCore
import SluiceWorkflow
import Synchronization

/// The coordinator service: runs workflows.
///
/// * With a store of several partitions (PostgreSQL), shares them with the
///   other coordinators of the prefix, each leading some (see
///   `Coordinator+Partitions.swift`). With one, as follows:
/// * Waits as a standby until it holds the store's coordinator lease (one
///   active coordinator per prefix), then keeps renewing it. If another
///   coordinator takes the lease over (after this one stalled past it), it
///   stops its loops, hands its unacknowledged events back to the queue and
///   stands by again. A late renewal keeps a lease nobody took over.
/// * Consumes task outcome events from its own quorum queue (single active
///   consumer) and applies each through the ``RunEngine``: the state change,
///   its outbox rows and timers are committed before the event is acknowledged.
/// * Publishes outbox rows with confirms and marks them sent; rows a crash left
///   unsent are published after the restart (step task ids are stable, so a
///   duplicate publish is harmless).
/// * Fires durable timers when they come due.
public struct Coordinator: Service {
    /// Coordinator settings: lease, outbox and timer pacing, retention, limits.
    public struct Configuration: Sendable {
        /// Who holds the lease (`host:pid:random`).
        public var holder: String
        /// How long a lease lasts without renewal; a standby takes over within about this long.
        public var leaseTTL: Duration
        /// Queue for step tasks whose definition names none.
        public var defaultQueue: String
        /// Unacknowledged events at once.
        public var prefetch: Int
        /// Outbox rows published per batch.
        public var outboxBatch: Int
        /// Longest wait between looks at the outbox and the timers.
        public var pollInterval: Duration
        /// How long finished runs are kept after their last change; nil keeps them forever.
        public var retention: Duration?
        /// Checks that every step outcome comes from a worker that holds the
        /// event key: unsigned or badly signed outcomes are dropped, logged
        /// and counted (`sluice_coordinator_forged_events_total`). Nil
        /// accepts every outcome (then only broker permissions keep
        /// producers from writing them: docs/operations.md).
        public var eventVerifier: EventSigner?
        /// Also bind every task's outcome to the coordinator queue, as versions
        /// before step event keys did, for workers of such a version still
        /// running (an upgrade that starts with the coordinator). Off: plain
        /// tasks' outcomes never reach the coordinator, and the old bindings
        /// are removed.
        public var legacyEventBindings: Bool
        /// The partition count for a store that has none yet (a new one):
        /// with more than one, several coordinators share the runs, each
        /// leading some partitions (PostgreSQL). A store keeps the count it
        /// was created with; 1 (the default) is one active coordinator.
        public var partitions: Int
        /// Ask workers to send step outcomes in packs (``EventPack``): under
        /// load one broker message then carries many outcomes. Every
        /// coordinator of the prefix must read packs (this version or later);
        /// off while one of an earlier version may still lead a partition.
        public var eventPacks: Bool

        public init(holder: String = Coordinator.defaultHolder, leaseTTL: Duration = .seconds(10), defaultQueue: String = "default",
                    prefetch: Int = 200, outboxBatch: Int = 500, pollInterval: Duration = .milliseconds(250),
                    retention: Duration? = .seconds(30 * 86_400)) {
            self.holder = holder
            self.leaseTTL = leaseTTL
            self.defaultQueue = defaultQueue
            self.prefetch = prefetch
            self.outboxBatch = outboxBatch
            self.pollInterval = pollInterval
            self.retention = retention
            self.eventVerifier = nil
            self.legacyEventBindings = false
            self.partitions = 1
            self.eventPacks = true
        }
    }

    /// Thrown when this coordinator lost its lease while it was active.
    public struct LeaseLost: Error, CustomStringConvertible {
        public var holder: String
        /// True if the store could not be reached to renew it for a whole lease
        /// TTL: another coordinator may have taken it, or may take it any time.
        public var unconfirmed = false
        public var description: String {
            unconfirmed ? "coordinator \(holder) could not renew its lease for a whole lease TTL"
                        : "coordinator \(holder) lost its lease to another coordinator"
        }
    }

    /// `host:pid:random`.
    public static var defaultHolder: String {
        "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier):\(UInt32.random(in: 0...UInt32.max))"
    }

    public let broker: any Broker
    public let engine: RunEngine
    public let configuration: Configuration
    let logger: Logger
    let activeFlag = ActiveFlag()
    let forgedCount = SharedCounter()
    /// The partitions this coordinator leads (with several).
    let leadership = PartitionLeadership()

    /// Step outcomes dropped because no worker signed them (since start).
    public var forgedEvents: Int { forgedCount.value }

    public init(broker: any Broker, engine: RunEngine, configuration: Configuration = Configuration(),
                logger: Logger = Logger(label: "sluice.coordinator")) {
        self.broker = broker
        self.engine = engine
        self.configuration = configuration
        self.logger = logger
    }

    /// Whether this coordinator holds the lease and is running workflows.
    public var isActive: Bool { activeFlag.value }

    var store: any WorkflowStore { engine.store }
    /// Wakes the outbox relay: the engine's commits ring it.
    var wake: Wake { engine.outboxFeed.wake }
    var leaseName: String { "coordinator:\(broker.topology.prefix)" }

    /// The partitions this coordinator leads now, of the store's count (empty
    /// while it stands by; with one partition, `[0]` while active).
    public var ledPartitions: (partitions: [Int], of: Int) {
        let led = leadership.led
        // One partition: the single lease's.
        if led.count == 1 { return (isActive ? [0] : [], 1) }
        return (led.partitions, led.count)
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                let count = try await self.storePartitionCount()
                self.leadership.setStoreCount(count)
                if count == 1 {
                    try await self.standByAndLead()
                } else {
                    try await self.sharePartitions(of: count)
                }
            }
        } catch is CancellationError {
            // Graceful shutdown: the loops were cancelled; the current event was
            // either committed and acknowledged or will come again.
        } catch {
            activeFlag.set(nil)
            await releaseLeaseAtExit()
            throw error
        }
        activeFlag.set(nil)
        await releaseLeaseAtExit()
        logger.info("coordinator stopped", metadata: ["holder": "\(configuration.holder)"])
    }
}
