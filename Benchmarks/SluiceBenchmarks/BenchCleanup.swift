import SluiceAMQP
import SluiceCore
import SluiceRabbitMQ
import SluiceWire

extension RabbitMQBroker {
    /// Removes a bench prefix's `queues` (and what is left in them), its
    /// delay ladder, its shared exchanges and `exchanges`; failures are
    /// ignored (clean-up is best effort).
    func removeBenchTopology(queues: [String], exchanges: [String] = []) async {
        guard let admin = try? await connection.openChannel() else { return }
        for name in queues + topology.delayQueues.map(\.queue.name) { _ = try? await admin.queueDelete(name) }
        for name in topology.exchanges.map(\.name) + exchanges { _ = try? await admin.exchangeDelete(name) }
        await admin.deleteRevocations(of: topology)
        try? await admin.close()
    }
}

extension AMQPChannel {
    /// Deletes a bench prefix's revocation stream and exchange (a worker
    /// declares them): a stream left behind keeps a process and its
    /// segments on the node, and a node that ran many benches slows down.
    func deleteRevocations(of topology: Topology) async {
        _ = try? await queueDelete(topology.revocationStream)
        _ = try? await exchangeDelete(topology.revocationExchange)
    }
}
