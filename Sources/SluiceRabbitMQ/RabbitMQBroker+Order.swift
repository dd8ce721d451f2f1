import SluiceAMQP
import SluiceCore
import SluiceWire

extension RabbitMQBroker {
    public func prepareOrdered(queues: [String]) async throws {
        for queue in queues { try Topology.validateBaseQueue(queue) }
        try await retryingTransient("declaring the ordered partitions") { try await self.declareOrderedTopology(queues: queues) }
    }

    private func declareOrderedTopology(queues: [String]) async throws {
        var channel = try await connection.openChannel()
        defer { Task { [channel] in try? await channel.close() } }
        try await channel.exchangeDeclare(topology.orderedExchangeDeclaration)
        for queue in queues {
            for index in 0..<Topology.orderPartitionCount {
                channel = try await declareQueue(topology.orderPartitionDeclaration(queue, index), on: channel)
                try await channel.queueBind(queue: topology.orderPartitionQueue(queue, index), exchange: topology.orderedExchange,
                                            routingKey: topology.orderRoutingKey(queue, partition: index))
            }
        }
    }
}
