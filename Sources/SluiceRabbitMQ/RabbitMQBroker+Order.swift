import SluiceAMQP
import SluiceCore
import SluiceWire
import Synchronization

extension RabbitMQBroker {
    public func prepareOrdered(queues: [String]) async throws {
        for queue in queues { try Topology.validateBaseQueue(queue) }
        try await checkConsistentHashExchange()
        try await retryingTransient("declaring the ordered partitions") { try await self.declareOrderedTopology(queues: queues) }
    }

    private func declareOrderedTopology(queues: [String]) async throws {
        var channel = try await connection.openChannel()
        defer { Task { [channel] in try? await channel.close() } }
        for queue in queues {
            try await channel.exchangeDeclare(topology.orderedExchangeDeclaration(queue))
            for index in 0..<Topology.orderPartitionCount {
                channel = try await declareQueue(topology.orderPartitionDeclaration(queue, index), on: channel)
                try await channel.queueBind(queue: topology.orderPartitionQueue(queue, index), exchange: topology.orderedExchange(queue),
                                            routingKey: Topology.orderPartitionWeight)
            }
        }
    }

    /// Declares a consistent-hash exchange on a connection of its own
    /// first: a broker without the plugin answers an unknown exchange type
    /// by closing the whole connection, which must not be this broker's
    /// (its recovery would declare the exchange again, and fail again).
    private func checkConsistentHashExchange() async throws {
        guard !consistentHashChecked.withLock({ $0 }) else { return }
        var configuration = connection.configuration
        configuration.recovery = nil
        configuration.connectionName = (configuration.connectionName ?? "sluice") + " (plugin check)"
        let probe = try await AMQPConnection.connect(configuration)
        defer { Task { await probe.close() } }
        let name = "\(topology.prefix).ordered-probe-\(UInt32.random(in: 0...UInt32.max))"
        do {
            let channel = try await probe.openChannel()
            try await channel.exchangeDeclare(ExchangeDeclaration(name: name, type: "x-consistent-hash", autoDelete: true))
            _ = try? await channel.exchangeDelete(name)
        } catch {
            throw SluiceError(.broker, "ordered tasks need RabbitMQ's consistent-hash exchange: enable the plugin "
                              + "(rabbitmq-plugins enable rabbitmq_consistent_hash_exchange; scripts/broker does) (\(error))")
        }
        consistentHashChecked.withLock { $0 = true }
    }
}
