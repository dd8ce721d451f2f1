import SluiceAMQP
import SluiceCore
import SluiceRabbitMQ
import SluiceWire

extension RabbitMQBroker {
    /// Removes a bench prefix's `queues` (and what is left in them), its
    /// delay ladder, revocation stream, shared exchanges and `exchanges`; failures are
    /// ignored (clean-up is best effort).
    func removeBenchTopology(queues: [String], exchanges: [String] = []) async {
        guard let admin = try? await connection.openChannel() else { return }
        for name in queues + topology.delayQueues.map(\.queue.name) { _ = try? await admin.queueDelete(name) }
        for name in topology.exchanges.map(\.name) + exchanges { _ = try? await admin.exchangeDelete(name) }
        // A worker declares the revocation stream: one left behind keeps a
        // process and its segments on the node, which slows after many benches.
        _ = try? await admin.queueDelete(topology.revocationStream)
        _ = try? await admin.exchangeDelete(topology.revocationExchange)
        try? await admin.close()
    }
}
