import SluiceAMQP
import SluiceCore

/// The ``Broker`` protocol on RabbitMQ, through SluiceAMQP.
///
/// One connection (with automatic recovery); one confirm channel for all
/// publishing; one channel per consumer. Everything it declares comes from
/// the ``Topology``.
public final class RabbitMQBroker: Broker {
    public let topology: Topology
    /// The underlying connection.
    public let connection: AMQPConnection
    private let publisher: AMQPChannel

    private init(topology: Topology, connection: AMQPConnection, publisher: AMQPChannel) {
        self.topology = topology
        self.connection = connection
        self.publisher = publisher
    }

    /// Connects and opens the publishing channel.
    public static func connect(url: AMQPURL, topology: Topology, connectionName: String = "sluice",
                               confirmWindow: Int = 1024) async throws -> RabbitMQBroker {
        let connection = try await AMQPConnection.connect(.init(url: url, connectionName: connectionName,
                                                               confirmWindow: confirmWindow))
        let publisher = try await connection.openChannel(confirms: true)
        return RabbitMQBroker(topology: topology, connection: connection, publisher: publisher)
    }

    public func prepare(queues: [String]) async throws {
        for queue in queues { try Topology.validateQueue(queue) }
        let channel = try await connection.openChannel()
        defer { Task { try? await channel.close() } }
        for exchange in topology.exchanges { try await channel.exchangeDeclare(exchange) }
        for (queue, exchange) in topology.delayQueues {
            try await channel.queueDeclare(queue)
            try await channel.queueBind(queue: queue.name, exchange: exchange, routingKey: "")
        }
        for queue in queues {
            try await channel.queueDeclare(topology.workQueueDeclaration(queue))
            try await channel.queueBind(queue: topology.workQueue(queue), exchange: topology.tasksExchange, routingKey: queue)
            try await channel.queueDeclare(topology.deadQueueDeclaration(queue))
            try await channel.queueBind(queue: topology.deadQueue(queue), exchange: topology.deadExchange, routingKey: queue)
        }
    }

    public func publish(_ messages: [OutboundMessage]) async throws -> [Result<Void, any Error>] {
        try await publisher.publish(batch: messages).map { $0.mapError { $0 as any Error } }
    }

    public func consume(queue: String, prefetch: Int) async throws -> BrokerConsumer {
        let channel = try await connection.openChannel()
        try await channel.qos(prefetchCount: UInt16(clamping: max(1, prefetch)))
        let consumer = try await channel.consume(queue: queue)
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: BrokerDelivery.self)
        let pump = Task {
            do {
                for try await delivery in consumer {
                    let count = delivery.properties.headers?["x-delivery-count"]?.intValue ?? (delivery.redelivered ? 1 : 0)
                    continuation.yield(BrokerDelivery(
                        properties: delivery.properties, body: delivery.body, redelivered: delivery.redelivered,
                        deliveryCount: count, routingKey: delivery.routingKey, acknowledger: Acknowledger(delivery: delivery)))
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in pump.cancel() }
        return BrokerConsumer(stream: stream) {
            try await consumer.cancel()
        }
    }

    public func queueState(_ queue: String) async throws -> QueueState {
        // A passive declare of a missing queue closes its channel: use a throwaway one.
        let channel = try await connection.openChannel()
        defer { Task { try? await channel.close() } }
        return try await channel.queueDeclarePassive(queue)
    }

    public func purge(_ queue: String) async throws -> Int {
        let channel = try await connection.openChannel()
        defer { Task { try? await channel.close() } }
        return Int(try await channel.queuePurge(queue))
    }

    public func close() async {
        await connection.close()
    }

    private struct Acknowledger: DeliveryAcknowledger {
        let delivery: AMQPDelivery
        func ack() async throws { try await delivery.ack() }
        func reject(requeue: Bool) async throws { try await delivery.reject(requeue: requeue) }
    }
}
