import Foundation
public import Logging
import Metrics
public import ServiceLifecycle
public import SluiceCore

/// Keeps the records of tracked tasks (``SluiceCore/TaskEnvelope/track``):
/// consumes the coordinator's tracking queue (``SluiceCore/Topology/trackingQueue``,
/// bound to `~track.#`), applies what has arrived as one store transaction,
/// then acknowledges it; deletes records past their retention.
///
/// Every coordinator runs one, active or standby, on any partition: applying
/// a change twice or out of order changes nothing (``TaskTrackingChange``), so
/// the queue needs no single consumer. Untracked tasks never reach it.
public struct TaskTracker: Service {
    public struct Configuration: Sendable {
        /// How long a finished task's record is kept after its last change.
        public var retention: Duration
        /// How long an unfinished one is kept without news (a task whose
        /// worker died at the delivery limit never reports an end).
        public var unfinishedRetention: Duration
        /// Unacknowledged events at once, and the most applied in one transaction.
        public var prefetch: Int
        /// With an event key, a worker's events (all but producers' `queued`)
        /// count only when signed with it, as step outcomes do.
        public var eventVerifier: EventSigner?

        public init(retention: Duration = .seconds(86_400), unfinishedRetention: Duration = .seconds(7 * 86_400), prefetch: Int = 500,
                    eventVerifier: EventSigner? = nil) {
            self.retention = retention
            self.unfinishedRetention = unfinishedRetention
            self.prefetch = prefetch
            self.eventVerifier = eventVerifier
        }
    }

    public let broker: any Broker
    public let store: any WorkflowStore
    public let configuration: Configuration
    private let logger: Logger
    private let recorded = SharedCounter()

    /// Tracking events applied to the store since start (each counted once
    /// it is committed, whether it changed a record or not).
    public var recordedEvents: Int { recorded.value }

    public init(broker: any Broker, store: any WorkflowStore, configuration: Configuration = Configuration(),
                logger: Logger = Logger(label: "sluice.coordinator.tasks")) {
        self.broker = broker
        self.store = store
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { try await self.pruneLoop() }
                    group.addTask { try await self.consumeLoop() }
                }
            }
        } catch is CancellationError {
            // Shutdown: what was applied is acknowledged; the rest comes again.
        }
    }

    /// Consumes until cancelled; a consumer that ends (a lost connection) is started again.
    private func consumeLoop() async throws {
        let restarts = Counter(label: "sluice_coordinator_loop_restarts_total", dimensions: [("loop", "tasks")])
        while true {
            do {
                try await broker.prepareTrackingQueue()
                let consumer = try await broker.consume(queue: broker.topology.trackingQueue, prefetch: configuration.prefetch)
                try await DeliveryBuffer.applyInBatches(from: consumer, max: configuration.prefetch) { try await self.apply($0) }
                await consumer.close()
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                logger.warning("task tracking stopped; starting it again", metadata: ["error": "\(error)"])
            }
            restarts.increment()
            try await Task.sleep(for: .seconds(1))
        }
    }

    /// Applies a batch in one transaction and acknowledges it. If that fails
    /// while the store answers, one by one, dropping (with a warning) what
    /// cannot be applied; if the store does not answer, hands the batch back.
    private func apply(_ deliveries: [BrokerDelivery]) async throws {
        let changes = deliveries.map { delivery -> TaskTrackingChange? in
            guard let event = try? TaskEvent.decode(delivery.body), Self.matchesKey(event, delivery.routingKey) else {
                logger.warning("a tracking event that is not a task event of its routing key was dropped",
                               metadata: ["routingKey": "\(delivery.routingKey.prefix(300))"])
                return nil
            }
            if event.kind != .queued, let verifier = configuration.eventVerifier, !verifier.verify(event) {
                logger.warning("a tracking event that no worker signed was dropped", metadata: ["task.id": "\(event.taskID.prefix(300))"])
                return nil
            }
            return TaskTrackingChange(event)
        }
        let counter = Counter(label: "sluice_coordinator_tracked_events_total")
        do {
            let valid = changes.compactMap { $0 }
            try await store.recordTaskChanges(valid)
            recorded.increment(by: valid.count)
            counter.increment(by: valid.count)
            for delivery in deliveries { try? await delivery.ack() }
            return
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            guard await storeAnswers() else {
                logger.warning("the store does not answer; tracking events go back to the queue", metadata: ["error": "\(error)"])
                for delivery in deliveries { try? await delivery.reject(requeue: true) }
                try await Task.sleep(for: .seconds(1))
                return
            }
        }
        for (i, (delivery, change)) in zip(deliveries, changes).enumerated() {
            if let change {
                do {
                    try await store.recordTaskChanges([change])
                    recorded.increment()
                    counter.increment()
                } catch is CancellationError { throw CancellationError() } catch {
                    guard await storeAnswers() else {
                        // The store went away meanwhile: this one and the rest come again.
                        for rest in deliveries[i...] { try? await rest.reject(requeue: true) }
                        try await Task.sleep(for: .seconds(1))
                        return
                    }
                    logger.warning("a tracking event could not be applied and was dropped",
                                   metadata: ["task": "\(change.taskID)", "error": "\(error)"])
                }
            }
            try? await delivery.ack()
        }
    }

    /// Whether the routing key is the one of the event's queue and kind.
    /// Producers may publish only `…queued` keys (docs/operations.md grants
    /// them no other), so a producer cannot pass off a `queued` key as an outcome.
    static func matchesKey(_ event: TaskEvent, _ routingKey: String) -> Bool {
        // The exact key of the event's queue and kind: one queue's worker,
        // narrowed by topic grants to its queue, cannot write another's records.
        routingKey == "\(Topology.trackEventWord).\(event.queue).\(event.kind.rawValue)"
    }

    private func storeAnswers() async -> Bool {
        do {
            _ = try await store.trackedTask(id: "")
            return true
        } catch {
            return false
        }
    }

    /// Deletes records past their retention, at start and then every quarter
    /// of it (at least every second, at most every 10 minutes).
    private func pruneLoop() async throws {
        let every = min(max(configuration.retention / 4, .seconds(1)), .seconds(600))
        while true {
            do {
                var total = 0
                while true {
                    let now = Date()
                    let count = try await store.pruneTrackedTasks(finishedBefore: now.addingTimeInterval(-configuration.retention.timeInterval),
                                                                  unfinishedBefore: now.addingTimeInterval(-configuration.unfinishedRetention.timeInterval),
                                                                  limit: 1000)
                    total += count
                    if count < 1000 { break }
                }
                if total > 0 { logger.debug("deleted tracked tasks past their retention", metadata: ["count": "\(total)"]) }
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                logger.warning("could not delete old tracked tasks; trying again later", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: every)
        }
    }
}
