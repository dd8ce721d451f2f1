import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SluiceCore
import SluiceWire
import SluiceWorkflow
import Synchronization

/// Task outcome events and dead letters: consumed, checked, applied.
extension Coordinator {
    /// A consumer of `queue` for `body`, closed afterwards whatever happens:
    /// deliveries not yet acknowledged go back to the queue for whoever leads next.
    func consuming(_ queue: String, prefetch: Int, partition: Int = 0, of partitions: Int = 1,
                   _ body: (BrokerConsumer) async throws -> Void) async throws {
        // Declared at each start (idempotent): also after a restart because
        // the queue was deleted. With partitions, only this partition's queue
        // (and the dead-letter watch): the relay declares them all, once; each
        // consumer declaring every queue would cost N × N calls at a start.
        if partitions == 1 {
            try await prepareEventQueues(partitions: 1)
        } else {
            try await broker.preparePartitionQueue(partition, of: partitions)
        }
        let consumer = try await broker.consume(queue: queue, prefetch: prefetch)
        do {
            try await body(consumer)
        } catch {
            await consumer.close()
            throw error
        }
        await consumer.close()
    }

    /// Declares and binds the event queues of every partition (those of
    /// partitions led by others too: a step task's outcome needs its queue
    /// before the task goes out), and the dead-letter watch queue.
    func prepareEventQueues(partitions count: Int) async throws {
        if count == 1 {
            try await broker.prepareCoordinatorQueue(legacyEventBindings: configuration.legacyEventBindings)
        } else {
            for partition in 0..<count { try await broker.preparePartitionQueue(partition, of: count) }
        }
    }

    /// Applies the events of partition `partition` of `count` (the single
    /// coordinator queue with one partition) until cancelled.
    func consumeEvents(partition: Int = 0, of count: Int = 1) async throws {
        let queue = broker.topology.coordinatorQueue(partition: partition, of: count)
        try await consuming(queue, prefetch: configuration.prefetch, partition: partition, of: count) { consumer in
            try await DeliveryBuffer.applyInBatches(from: consumer, max: configuration.prefetch) { try await self.apply($0) }
        }
    }

    /// Applies a batch of deliveries, then acknowledges them: in one commit,
    /// unless one run has many events in it (a big map); then the other
    /// runs' events go first, in a commit of their own, and the big run's
    /// follow in commits of at most ``FairBatch/heavyChunk`` events, so that
    /// one huge run delays the others' events by at most one such commit.
    /// A pack (``EventPack``) counts as its events; its delivery is
    /// acknowledged once all of them are applied.
    func apply(_ deliveries: [BrokerDelivery]) async throws {
        var items: [DecodedItem] = []
        items.reserveCapacity(deliveries.count)
        for index in deliveries.indices { decode(deliveries[index], index: index, into: &items) }
        var failed: Set<Int> = []
        for part in FairBatch.parts(runIDs: items.map(\.runID)) {
            try await apply(part.map { items[$0] }, deliveries: deliveries, failed: &failed)
        }
        for index in deliveries.indices {
            // One that failed comes again, whole (applying an event twice changes nothing).
            if failed.contains(index) { try? await deliveries[index].reject(requeue: true) } else { try await deliveries[index].ack() }
        }
        if !failed.isEmpty { try await Task.sleep(for: .seconds(1)) }
    }

    /// An event or run message read from a delivery (a pack holds several),
    /// valid and authentic; `delivery` is its delivery's index in the batch.
    struct DecodedItem {
        var delivery: Int
        var event: TaskEvent?
        var message: RunMessage?
        var runID: String? { event?.workflowRunID ?? message?.runID }
    }

    /// Appends what `delivery` holds to `items`: nothing for one that is
    /// invalid or forged (it is acknowledged and dropped, logged and counted).
    func decode(_ delivery: BrokerDelivery, index: Int, into items: inout [DecodedItem]) {
        if Self.isRunMessage(delivery) {
            if let message = runMessage(delivery) { items.append(DecodedItem(delivery: index, message: message)) }
            return
        }
        do {
            if Topology.isEventPackKey(delivery.routingKey) {
                let (events, invalid) = EventPack.decodeEach(delivery.body)
                if invalid > 0 {
                    logger.warning("events of a pack that are not valid were dropped", metadata: ["count": "\(invalid)"])
                }
                for event in events where isAuthentic(event) {
                    items.append(DecodedItem(delivery: index, event: event))
                }
            } else {
                let event = try TaskEvent.decode(delivery.body)
                if isAuthentic(event) { items.append(DecodedItem(delivery: index, event: event)) }
            }
        } catch {
            logger.warning("an event that is not valid JSON was dropped", metadata: ["key": "\(delivery.routingKey.prefix(300))", "error": "\(error)"])
        }
    }

    /// Applies decoded items in one commit. If that fails, one at a time, so
    /// that one that cannot be applied does not hold the others back; the
    /// deliveries of those that failed are added to `failed`.
    private func apply(_ items: [DecodedItem], deliveries: [BrokerDelivery], failed: inout Set<Int>) async throws {
        do {
            try await engine.apply(items.compactMap(\.event), messages: items.compactMap(\.message))
            return
        } catch is CancellationError {
            throw CancellationError()
        } catch where Self.isLeaseLoss(error) {
            throw error
        } catch {
            logger.warning("could not apply a batch of events; applying them one by one", metadata: [
                "count": "\(items.count)", "error": "\(error)"])
        }
        // Every item, also after another of the same delivery failed: that one
        // may fail for good, and the rest of its pack must not wait on it.
        for item in items {
            do {
                try await engine.apply(item.event.map { [$0] } ?? [], messages: item.message.map { [$0] } ?? [])
            } catch is CancellationError {
                throw CancellationError()
            } catch where Self.isLeaseLoss(error) {
                throw error
            } catch {
                failed.insert(item.delivery)
                logger.error("could not apply an event; it will come again", metadata: [
                    "task.id": "\(item.event?.taskID ?? "")", "run": "\(item.runID ?? "")", "error": "\(error)"])
            }
        }
    }

    /// Turns dead-lettered step tasks into `dead` events: RabbitMQ dead-letters
    /// a task that crashed its worker at every delivery by itself, and no
    /// worker is left to report it. (A worker's own dead letters also come
    /// with an event; applying both changes nothing twice.)
    func consumeDeadLetters(partitions: Int = 1) async throws {
        try await consuming(broker.topology.coordinatorDeadQueue, prefetch: 50, of: partitions) { consumer in
            for try await delivery in consumer {
                let headers = delivery.properties.headers ?? [:]
                guard let task = try? TaskEnvelope.decode(properties: delivery.properties, body: delivery.body, queue: ""),
                      task.workflowRunID != nil else {
                    try await delivery.ack()
                    continue
                }
                var event = TaskEvent(kind: .dead, task: task)
                switch broker.topology.deadLetterOrigin(headers) {
                case .deliveryLimit:
                    event.deadReason = .deliveryLimit
                    // The broker dead-letters the message as published: a real
                    // step task carries the coordinator's own signature.
                    if let verifier = configuration.eventVerifier, !verifier.verifyStep(task) {
                        forged(event, why: "a dead letter of a step task the coordinator did not sign")
                        try await delivery.ack()
                        continue
                    }
                case .worker(let reason):
                    event.deadReason = reason
                    event.signature = headers[WireHeader.signature]?.stringValue
                    if !isAuthentic(event) {
                        try await delivery.ack()
                        continue
                    }
                case .other(let why):
                    forged(event, why: why)
                    try await delivery.ack()
                    continue
                }
                event.errorMessage = event.deadReason == .deliveryLimit ? "the task crashed or stalled its worker at every delivery"
                    : headers[WireHeader.errorMessage]?.stringValue
                do {
                    try await engine.apply([event])
                    try await delivery.ack()
                } catch is CancellationError {
                    return
                } catch where Self.isLeaseLoss(error) {
                    throw error
                } catch {
                    logger.error("could not apply a dead letter; it will come again", metadata: ["task.id": "\(task.id)", "error": "\(error)"])
                    try? await delivery.reject(requeue: true)
                    try await Task.sleep(for: .seconds(1))
                }
            }
        }
    }

    /// Whether a delivery is a message from another coordinator (`~wf.<bucket>.~run`).
    static func isRunMessage(_ delivery: BrokerDelivery) -> Bool {
        delivery.routingKey.hasSuffix(runMessageKeySuffix)
    }

    /// Built once: it is checked on every delivery.
    static let runMessageKeySuffix = ".\(Topology.runMessageWord)"

    /// The run message a delivery holds, if it is valid and (with an event
    /// key) signed by a coordinator; else nil, logged and counted.
    func runMessage(_ delivery: BrokerDelivery, counting: Bool = true) -> RunMessage? {
        guard let message = try? RunMessage.decode(body: delivery.body) else {
            if counting { logger.warning("a run message that cannot be read was dropped", metadata: ["key": "\(delivery.routingKey.prefix(300))"]) }
            return nil
        }
        if let verifier = configuration.eventVerifier,
           !verifier.verifyMessage(delivery.body, signature: delivery.properties.headers?[WireHeader.signature]?.stringValue) {
            if counting {
                logger.warning("a run message that no coordinator signed was dropped", metadata: ["run": "\(message.runID.prefix(300))"])
                Counter(label: "sluice_coordinator_forged_events_total").increment()
                forgedCount.increment()
            }
            return nil
        }
        return message
    }

    /// True if the coordinator may act on `event`: it has no event key, or
    /// the event is signed with it. Otherwise the event is logged and counted.
    /// `counting` false: checked again (a batch applied one by one), already counted.
    func isAuthentic(_ event: TaskEvent, counting: Bool = true) -> Bool {
        guard let verifier = configuration.eventVerifier, event.workflowRunID != nil else { return true }
        if verifier.verify(event) { return true }
        if counting { forged(event, why: event.signature == nil ? "unsigned" : "bad signature") }
        return false
    }

    func forged(_ event: TaskEvent, why: String) {
        logger.warning("a step outcome that no worker signed was dropped", metadata: [
            "task.id": "\(event.taskID.prefix(300))", "run": "\(event.workflowRunID?.prefix(300) ?? "")", "kind": "\(event.kind.rawValue)",
            "why": "\(why)"])
        Counter(label: "sluice_coordinator_forged_events_total").increment()
        forgedCount.increment()
    }
}
