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
        try? await admin.close()
    }
}
