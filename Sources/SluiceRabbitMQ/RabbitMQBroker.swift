public import SluiceAMQP
public import SluiceCore
public import SluiceWire
import Synchronization

/// The ``Broker`` protocol on RabbitMQ, through SluiceAMQP.
///
/// One connection (with automatic recovery); a few confirm channels for
/// publishing, on that connection and on any connections opened only for
/// publishing (`publishingConnections`, none unless asked); one channel per
/// consumer. Everything it declares comes from the ``Topology``.
///
/// Each `publish` call goes out on one publisher channel, taken in turn.
/// RabbitMQ handles a channel's publishes in one process, one after another,
/// so two channels let a busy producer use two broker cores. It reads a
/// connection's frames in one process too, and throttles a connection as a
/// whole when one of its channels falls behind (credit flow), so channels
/// on a second connection go on while the first is held (measured in
/// docs/performance.md). Order holds where it did with one channel: within
/// a call, and between calls made one after another (a call returns only
/// once the broker has confirmed it).
public final class RabbitMQBroker: Broker {
    public let topology: Topology
    /// The underlying connection: declarations, consumers, and the outcomes
    /// of its deliveries.
    public let connection: AMQPConnection
    /// The connections beyond ``connection`` that carry only publisher channels.
    private let publishingConnections: [AMQPConnection]
    private struct Publisher {
        var channel: AMQPChannel
        /// When it was opened (see ``replace(publisher:_:)``).
        var opened: ContinuousClock.Instant
        let connection: AMQPConnection
    }
    /// The publisher channels: ``connection``'s first (`ownPublisherCount`),
    /// then those of the publishing connections.
    private let publishers: Mutex<[Publisher]>
    private let publisherCount: Int
    private let ownPublisherCount: Int
    private let nextPublisher = Atomic<UInt>(0)

    private init(topology: Topology, connection: AMQPConnection, publishingConnections: [AMQPConnection],
                 publishers: [(AMQPChannel, AMQPConnection)]) {
        self.topology = topology
        self.connection = connection
        self.publishingConnections = publishingConnections
        self.publishers = Mutex(publishers.map { Publisher(channel: $0.0, opened: .now, connection: $0.1) })
        self.publisherCount = publishers.count
        self.ownPublisherCount = publishers.count { $0.1 === connection }
    }

    /// Connects and opens the publishing channels.
    ///
    /// - Parameters:
    ///   - publisherChannels: confirm channels opened on each connection that publishes.
    ///   - publishingConnections: connections to open beside this broker's
    ///     own, used only for publishing (named `<connectionName> (publishing)`).
    ///     A producer that enqueues at volume gains from one (`sluice enqueue
    ///     --count` opens one past its first batch). The outcome of a delivery
    ///     (``publish(_:settling:)``) still goes out only on the delivery's own
    ///     connection; every other publish takes the next channel of any of
    ///     them, so a worker sharing this broker would send its heartbeats on
    ///     them even while its own connection is down: give a worker a
    ///     broker without.
    public static func connect(url: AMQPURL, topology: Topology, connectionName: String = "sluice",
                               confirmWindow: Int = 1024, publisherChannels: Int = 2,
                               publishingConnections: Int = 0) async throws -> RabbitMQBroker {
        let connection = try await AMQPConnection.connect(.init(url: url, connectionName: connectionName,
                                                               confirmWindow: confirmWindow))
        var opened: [AMQPConnection] = []
        do {
            for i in 0..<max(0, publishingConnections) {
                opened.append(try await AMQPConnection.connect(.init(
                    url: url, connectionName: connectionName + " (publishing\(i == 0 ? "" : " \(i + 1)"))", confirmWindow: confirmWindow)))
            }
            var publishers: [(AMQPChannel, AMQPConnection)] = []
            for publishing in [connection] + opened {
                for _ in 0..<max(1, publisherChannels) { publishers.append((try await publishing.openChannel(confirms: true), publishing)) }
            }
            return RabbitMQBroker(topology: topology, connection: connection, publishingConnections: opened,
                                  publishers: publishers)
        } catch {
            for each in [connection] + opened { await each.close() }
            throw error
        }
    }

    public func prepare(queues: [String]) async throws {
        for queue in queues { try Topology.validateQueue(queue) }
        try await retryingTransient("declaring the task queues") { try await self.declareTaskTopology(queues: queues) }
    }

    private func declareTaskTopology(queues: [String]) async throws {
        var channel = try await connection.openChannel()
        defer { Task { [channel] in try? await channel.close() } }
        for exchange in topology.exchanges { try await channel.exchangeDeclare(exchange) }
        for (queue, exchange) in topology.delayQueues {
            channel = try await declareQueue(queue, on: channel)
            try await channel.queueBind(queue: queue.name, exchange: exchange, routingKey: "")
        }
        var deadQueues: Set<String> = []
        for queue in queues {
            // A level of a queue (`emails~high`) has a work queue of its own and shares the queue's dead queue.
            channel = try await declareQueue(topology.workQueueDeclaration(queue), on: channel)
            try await channel.queueBind(queue: topology.workQueue(queue), exchange: topology.tasksExchange, routingKey: queue)
            let base = Topology.splitLevel(queue).queue
            guard deadQueues.insert(base).inserted else { continue }
            channel = try await declareQueue(topology.deadQueueDeclaration(base), on: channel)
            try await channel.queueBind(queue: topology.deadQueue(base), exchange: topology.deadExchange, routingKey: base)
        }
    }

    public func prepareIsolation(queues: [String]) async throws {
        for queue in queues { try Topology.validateBaseQueue(queue) }
        try await retryingTransient("declaring the isolation queues") { try await self.declareIsolationTopology(queues: queues) }
    }

    private func declareIsolationTopology(queues: [String]) async throws {
        var channel = try await connection.openChannel()
        defer { Task { [channel] in try? await channel.close() } }
        try await channel.exchangeDeclare(ExchangeDeclaration(name: topology.isolationExchange, type: "direct"))
        for queue in queues {
            channel = try await declareQueue(topology.isolationQueueDeclaration(queue), on: channel)
            try await channel.queueBind(queue: topology.isolationQueue(queue), exchange: topology.isolationExchange, routingKey: queue)
        }
    }

    public func prepareCoordinatorQueue(legacyEventBindings: Bool) async throws {
        try await retryingTransient("declaring the coordinator queue") {
            try await self.declareTaskTopology(queues: [])
            try await self.declareCoordinatorQueue(legacyEventBindings: legacyEventBindings)
        }
    }

    private func declareCoordinatorQueue(legacyEventBindings: Bool) async throws {
        var channel = try await connection.openChannel()
        defer { Task { [channel] in try? await channel.close() } }
        channel = try await declareQueue(topology.coordinatorQueueDeclaration, on: channel)
        for key in topology.coordinatorBindings {
            try await channel.queueBind(queue: topology.coordinatorQueue, exchange: topology.eventsExchange, routingKey: key)
        }
        // The queue is durable: bindings an earlier version made stay until removed.
        for key in topology.legacyCoordinatorBindings {
            if legacyEventBindings {
                try await channel.queueBind(queue: topology.coordinatorQueue, exchange: topology.eventsExchange, routingKey: key)
            } else {
                try await channel.queueUnbind(queue: topology.coordinatorQueue, exchange: topology.eventsExchange, routingKey: key)
            }
        }
        channel = try await declareQueue(topology.coordinatorDeadQueueDeclaration, on: channel)
    }

    public func prepareTrackingQueue() async throws {
        try await retryingTransient("declaring the task tracking queue") {
            try await self.declareTaskTopology(queues: [])
            var channel = try await self.connection.openChannel()
            defer { Task { [channel] in try? await channel.close() } }
            channel = try await self.declareQueue(self.topology.trackingQueueDeclaration, on: channel)
            for key in self.topology.trackingBindings {
                try await channel.queueBind(queue: self.topology.trackingQueue, exchange: self.topology.eventsExchange, routingKey: key)
            }
        }
    }

    public func prepareRevocations() async throws {
        try await retryingTransient("declaring the revocation stream") {
            var channel = try await self.connection.openChannel()
            defer { Task { [channel] in try? await channel.close() } }
            try await channel.exchangeDeclare(self.topology.revocationExchangeDeclaration)
            channel = try await self.declareQueue(self.topology.revocationStreamDeclaration, on: channel)
            try await channel.queueBind(queue: self.topology.revocationStream, exchange: self.topology.revocationExchange, routingKey: "")
        }
    }

    /// Follows the stream on a connection of its own, without recovery: a
    /// stream whose leader is on a lost node can refuse (or never answer) a
    /// consume for a while, and a consumer recorded on the main connection
    /// would hold that connection's recovery, and so the task consumers,
    /// hostage. Here a lost connection just ends the sequence with its error;
    /// the follower starts again from the first entry.
    public func followRevocations(prefetch: Int) async throws -> BrokerConsumer {
        var configuration = connection.configuration
        configuration.recovery = nil
        configuration.connectionName = (configuration.connectionName ?? "sluice") + " (revocations)"
        let dedicated = try await AMQPConnection.connect(configuration)
        do {
            let channel = try await dedicated.openChannel()
            // A stream is read with a prefetch and acknowledgements (they only grant credit).
            try await channel.qos(prefetchCount: UInt16(clamping: max(1, prefetch)))
            let consumer = try await channel.consume(queue: topology.revocationStream, arguments: ["x-stream-offset": "first"])
            return BrokerConsumer(makeNext: {
                let reader = consumer.makeReader()
                return {
                    guard let delivery = try await reader.next() else { return nil }
                    return BrokerDelivery(properties: delivery.properties, body: delivery.body, redelivered: delivery.redelivered,
                                          deliveryCount: 0, routingKey: delivery.routingKey, acknowledger: Acknowledger(receipt: delivery.receipt))
                }
            }, cancel: {
                try await consumer.cancel()
            }, close: {
                await dedicated.close()
            })
        } catch {
            await dedicated.close()
            throw error
        }
    }

    public func preparePartitionQueue(_ partition: Int, of count: Int) async throws {
        try await retryingTransient("declaring coordinator partition queue \(partition)") {
            try await self.declareTaskTopology(queues: [])
            try await self.declarePartitionQueue(partition, of: count)
        }
    }

    private func declarePartitionQueue(_ partition: Int, of count: Int) async throws {
        var channel = try await connection.openChannel()
        defer { Task { [channel] in try? await channel.close() } }
        let queue = topology.coordinatorQueue(partition: partition, of: count)
        channel = try await declareQueue(topology.coordinatorQueueDeclaration(partition: partition, of: count), on: channel)
        for key in topology.coordinatorBindings(partition: partition, of: count) {
            try await channel.queueBind(queue: queue, exchange: topology.eventsExchange, routingKey: key)
        }
        channel = try await declareQueue(topology.coordinatorDeadQueueDeclaration, on: channel)
    }

    /// Declarations are idempotent: on a busy or restarting broker they are
    /// tried again (see ``TransientRetry``) instead of failing the process.
    func retryingTransient(_ what: String, _ body: () async throws -> Void) async throws {
        try await TransientRetry.run(what, budget: Self.transientRetryBudget, logger: connection.logger, body)
    }

    /// How long declarations are tried again after transient failures.
    static let transientRetryBudget: Duration = .seconds(120)

    public func prepareReplyQueue(_ name: String, expiresAfterMilliseconds: Int) async throws {
        // A quorum queue: on a busy broker its declare can fail with 541
        // cluster_not_formed (closing the connection), as the topology's can.
        try await retryingTransient("declaring reply queue \(name)") {
            var channel = try await self.connection.openChannel()
            defer { Task { [channel] in try? await channel.close() } }
            // Recorded by the connection: declared again after a reconnect, in
            // case it expired while the connection was down.
            channel = try await self.declareQueue(
                self.topology.replyQueueDeclaration(name, expiresAfterMilliseconds: expiresAfterMilliseconds), on: channel)
        }
    }

    public func bindReplyQueue(_ name: String, toDeadLettersOf queues: [String]) async throws {
        let channel = try await connection.openChannel()
        defer { Task { try? await channel.close() } }
        for queue in queues { try await channel.queueBind(queue: name, exchange: topology.deadExchange, routingKey: queue) }
    }

    public func releaseReplyQueue(_ name: String) async {
        guard let channel = try? await connection.openChannel() else { return }
        // Deleting through the connection also drops it from the topology it re-declares.
        _ = try? await channel.queueDelete(name)
        try? await channel.close()
    }

    /// Declares a queue; returns the channel to go on with. A quorum queue
    /// that exists with another replication size (declared by an earlier
    /// Sluice, which set none, or with another `--replicas`) is kept as it
    /// is: redeclaring cannot change its members (`rabbitmq-queues grow`
    /// and `shrink` do), and refusing would stop every process that meets it.
    func declareQueue(_ declaration: QueueDeclaration, on channel: AMQPChannel) async throws -> AMQPChannel {
        do {
            _ = try await channel.queueDeclare(declaration)
            return channel
        } catch let error as AMQPError where error.replyCode == 406 && (error.replyText ?? error.message).contains(Topology.replicasArgument) {
            // The broker closed the channel; its reply names the queue's own value.
            var existing = declaration
            existing.arguments[Topology.replicasArgument] = Self.existingReplicas(in: error.replyText ?? error.message).map { .int64($0) }
            let fresh = try await connection.openChannel()
            do {
                _ = try await fresh.queueDeclare(existing)
            } catch {
                Task { try? await fresh.close() }
                throw error
            }
            return fresh
        }
    }

    /// The replication size a PRECONDITION_FAILED reply says the queue has
    /// ("... but current is '2'"), or nil for "current is none".
    static func existingReplicas(in reply: String) -> Int64? {
        guard let range = reply.firstRange(of: "current is ") else { return nil }
        let digits = reply[range.upperBound...].drop { !$0.isNumber }.prefix { $0.isNumber }
        return reply[range.upperBound...].hasPrefix("none") ? nil : Int64(digits)
    }

    public func watchDeadLetters(of queues: [String]) async throws {
        for queue in queues { try Topology.validateBaseQueue(queue) }
        let channel = try await connection.openChannel()
        defer { Task { try? await channel.close() } }
        for queue in queues {
            try await channel.queueBind(queue: topology.coordinatorDeadQueue, exchange: topology.deadExchange, routingKey: queue)
        }
    }

    public func publish(_ messages: [OutboundMessage]) async throws -> [Result<Void, any Error>] {
        try await publish(messages, receipt: nil)
    }

    /// The outcome of a delivery of this broker's connection goes out only on
    /// that connection (checked on its thread: ``AMQPChannel/publish(batch:settling:)``).
    public func publish(_ messages: [OutboundMessage], settling delivery: BrokerDelivery) async throws -> [Result<Void, any Error>] {
        guard let receipt = (delivery.acknowledger as? Acknowledger)?.receipt, receipt.came(on: connection) else {
            // Not one of this connection's deliveries: checked here only.
            if delivery.isStale { throw PublishFailure.staleOutcome }
            return try await publish(messages, receipt: nil)
        }
        return try await publish(messages, receipt: receipt)
    }

    private func publish(_ messages: [OutboundMessage], receipt: AMQPDelivery.Receipt?) async throws -> [Result<Void, any Error>] {
        let turn = nextPublisher.wrappingAdd(1, ordering: .relaxed).oldValue
        // An outcome only on the delivery's connection (the first slots): it must not outlive it.
        let slot = Int(turn % UInt(receipt == nil ? publisherCount : ownPublisherCount))
        let publisher = publishers.withLock { $0[slot].channel }
        let results: [Result<Void, AMQPError>]
        do {
            results = try await publisher.publish(batch: messages, settling: receipt)
        } catch let error as AMQPError where Self.endsChannel(error) {
            // The broker closed the channel (a publish it refused, e.g. 403):
            // without a new one, every later publish on this slot would fail.
            Task { await self.replace(publisher: slot, publisher) }
            throw error
        }
        if results.contains(where: { if case .failure = $0 { true } else { false } }), isChannelsFault(messages, results) {
            // Off this caller's path: its answer does not wait for a new channel.
            Task { await self.replace(publisher: slot, publisher) }
        }
        return results.map { $0.mapError { $0 as any Error } }
    }

    /// Whether failed publishes say the channel is at fault: it was closed,
    /// or the broker nacked a message to a queue that does not nack as a
    /// matter of course (a unique key's lock queue nacks whenever the key
    /// is held). Asked only when a publish failed.
    private func isChannelsFault(_ messages: [OutboundMessage], _ results: [Result<Void, AMQPError>]) -> Bool {
        let uniqueExchange = topology.uniqueExchange
        return zip(messages, results).contains { message, result in
            guard case .failure(let error) = result else { return false }
            return (error.code == .publishNacked && message.exchange != uniqueExchange) || Self.endsChannel(error)
        }
    }

    /// An error after which a channel takes no more publishes.
    static func endsChannel(_ error: AMQPError) -> Bool {
        error.code == .channelClosedByBroker || error.code == .channelClosed
    }

    /// Opens a new channel in place of a publisher channel the broker nacked.
    ///
    /// A nack may be the channel's fault, not the queue's: on RabbitMQ 3.10, a
    /// channel that first publishes to a quorum queue while the queue elects a
    /// new leader (its node just died) can go on nacking every publish to it,
    /// while a new channel on the same connection succeeds (seen in
    /// `ClusterTests`). New publishes go to the new channel at once; the old
    /// one is closed only after a while, so that publishes other callers
    /// still await on it get their confirm (or nack) instead of an error for
    /// a message the broker may have taken. At most one replacement per
    /// channel a second, since a full queue (`x-overflow: reject-publish`)
    /// nacks every time too.
    private func replace(publisher slot: Int, _ old: AMQPChannel) async {
        let due = publishers.withLock { p -> AMQPConnection? in
            guard p[slot].channel === old, ContinuousClock.now - p[slot].opened >= .seconds(1) else { return nil }
            p[slot].opened = .now  // this caller replaces it; others skip
            return p[slot].connection
        }
        guard let due, let fresh = try? await due.openChannel(confirms: true) else { return }
        publishers.withLock { $0[slot].channel = fresh }
        try? await Task.sleep(for: Self.retiredChannelLinger)
        try? await old.close()
    }

    /// How long a replaced publisher channel stays open for the confirms still due on it.
    static let retiredChannelLinger: Duration = .seconds(30)

    public func consume(queue: String, prefetch: Int) async throws -> BrokerConsumer {
        let channel = try await connection.openChannel()
        let consumer: AMQPConsumer
        do {
            try await channel.qos(prefetchCount: UInt16(clamping: max(1, prefetch)))
            consumer = try await channel.consume(queue: queue)
        } catch {
            // Not left open: a recorded channel would be opened again at every recovery.
            await Task { try? await channel.close() }.value
            throw error
        }
        return BrokerConsumer(makeNext: {
            let reader = consumer.makeReader()
            return {
                guard let delivery = try await reader.next() else { return nil }
                let count = delivery.properties.headers?["x-delivery-count"]?.intValue ?? (delivery.redelivered ? 1 : 0)
                return BrokerDelivery(properties: delivery.properties, body: delivery.body, redelivered: delivery.redelivered,
                                      deliveryCount: count, routingKey: delivery.routingKey,
                                      acknowledger: Acknowledger(receipt: delivery.receipt))
            }
        }, cancel: {
            try await consumer.cancel()
        }, close: {
            // Closing the channel ends the consumer and returns its unacknowledged
            // deliveries to the queue in one step. No basic.cancel first: on a
            // single-active-consumer queue (an ordered partition) a cancel hands
            // the queue to the next consumer at once, while this one still
            // holds a delivery. In a task of its own: callers close while being
            // cancelled, and a cancelled caller's request would be dropped unsent.
            await Task { try? await channel.close() }.value
        })
    }

    public func subscribeEvents(bindings: [String]) async throws -> BrokerConsumer {
        let channel = try await connection.openChannel()
        let name = topology.monitorQueue("\(UInt64.random(in: 0...UInt64.max))")
        do {
            // The events exchange may not exist yet (no worker has run under
            // this prefix): declaring it is idempotent and lets a monitor start first.
            if let events = topology.exchanges.first(where: { $0.name == topology.eventsExchange }) {
                try await channel.exchangeDeclare(events)
            }
            // Classic, exclusive, auto-delete; a length cap and TTL so a slow
            // reader cannot make the broker hoard events.
            try await channel.queueDeclare(QueueDeclaration(name: name, durable: false, exclusive: true, autoDelete: true, arguments: [
                "x-max-length": .int64(10_000), "x-message-ttl": .int64(60_000), "x-overflow": "drop-head",
            ]))
            for binding in bindings {
                try await channel.queueBind(queue: name, exchange: topology.eventsExchange, routingKey: binding)
            }
            try await channel.qos(prefetchCount: 500)
            let consumer = try await channel.consume(queue: name, noAck: true, exclusive: true)
            return BrokerConsumer(makeNext: {
                let reader = consumer.makeReader()
                return {
                    guard let delivery = try await reader.next() else { return nil }
                    return BrokerDelivery(properties: delivery.properties, body: delivery.body, redelivered: delivery.redelivered,
                                          deliveryCount: 0, routingKey: delivery.routingKey, acknowledger: NoAcknowledger())
                }
            }, cancel: {
                try await consumer.cancel()
                try? await channel.close()
            })
        } catch {
            // In a task of its own: a cancelled caller's request would be dropped unsent.
            await Task { try? await channel.close() }.value
            throw error
        }
    }

    /// Deliveries taken with no-ack are settled already.
    private struct NoAcknowledger: DeliveryAcknowledger {
        func ack() async throws {}
        func reject(requeue: Bool) async throws {}
    }

    public func queueState(_ queue: String) async throws -> QueueState {
        // A passive declare of a missing queue closes its channel: use a throwaway one.
        let channel = try await connection.openChannel()
        defer { Task { try? await channel.close() } }
        do {
            // RabbitMQ answers a quorum queue's passive declare by asking the
            // queue's leader, and says 0 ready and 0 consumers when the leader
            // does not answer within 250 ms (a busy broker): a full queue read
            // as empty. So a 0/0 answer is asked again twice before it is
            // believed (an empty idle queue costs three quick declares).
            var state = try await channel.queueDeclarePassive(queue)
            for _ in 0..<2 where state.messageCount == 0 && state.consumerCount == 0 {
                state = try await channel.queueDeclarePassive(queue)
            }
            return state
        } catch let error as AMQPError where error.replyCode == 404 {
            // As the in-memory broker says it: callers need not know AMQP.
            throw SluiceError(.notFound, "no queue \(queue)", queue: queue)
        }
    }

    public func purge(_ queue: String) async throws -> Int {
        let channel = try await connection.openChannel()
        defer { Task { try? await channel.close() } }
        return Int(try await channel.queuePurge(queue))
    }

    public func close() async {
        for publishing in publishingConnections { await publishing.close() }
        await connection.close()
    }

    /// Three words: it fits an existential's inline buffer (no allocation per delivery).
    private struct Acknowledger: DeliveryAcknowledger {
        let receipt: AMQPDelivery.Receipt
        func ack() async throws { try await receipt.ack() }
        func reject(requeue: Bool) async throws { try await receipt.reject(requeue: requeue) }
        var isStale: Bool { receipt.isStale }
    }
}
