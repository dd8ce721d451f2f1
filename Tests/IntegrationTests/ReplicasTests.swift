import Foundation
import SluiceAMQP
import SluiceCore
@testable import SluiceRabbitMQ
import SluiceTesting
import SluiceWire
import Testing

/// `x-quorum-initial-group-size` is checked when a queue is declared again:
/// queues created by an earlier Sluice (which set none) or with another
/// `--replicas` must still be usable.
@Suite("Quorum queue replicas (shared test node)")
struct ReplicasTests {
    @Test("a queue that exists with another replication size, or none, is kept as it is")
    func adoptsExisting() async throws {
        let url = try AMQPURL(await SharedBroker.url())
        let prefix = "it-replicas-\(UInt32.random(in: 0...UInt32.max))"
        let old = try await RabbitMQBroker.connect(url: url, topology: try Topology(prefix: prefix, replicas: nil))
        let other = try await RabbitMQBroker.connect(url: url, topology: try Topology(prefix: prefix, replicas: 1))
        let current = try await RabbitMQBroker.connect(url: url, topology: try Topology(prefix: prefix))
        try await old.prepare(queues: ["none"])
        try await other.prepare(queues: ["one"])
        // Both exist with other arguments than the default (3) asks for.
        try await current.prepare(queues: ["none", "one", "new"])
        try await current.prepareCoordinatorQueue(legacyEventBindings: false)
        // The queues work: a task goes through the one declared without the argument.
        let channel = try await current.connection.openChannel(confirms: true)
        try await channel.publish(routingKey: current.topology.workQueue("none"), body: Array("x".utf8))
        // Polled: on a busy node a quorum queue's count reads 0 when its answer is late.
        let queue = current.topology.workQueue("none")
        try await within(30, "the task counted in \(queue)") {
            while try await channel.queueDeclarePassive(queue).messageCount != 1 { try await Task.sleep(for: .milliseconds(20)) }
        }
        for q in ["none", "one", "new"] {
            _ = try await channel.queueDelete(current.topology.workQueue(q))
            _ = try await channel.queueDelete(current.topology.deadQueue(q))
        }
        _ = try await channel.queueDelete(current.topology.coordinatorQueue)
        _ = try await channel.queueDelete(current.topology.coordinatorDeadQueue)
        for (q, _) in current.topology.delayQueues { _ = try await channel.queueDelete(q.name) }
        for e in current.topology.exchanges { try await channel.exchangeDelete(e.name) }
        for b in [old, other, current] { await b.close() }
    }

    @Test("the broker's reply names the existing size")
    func parsesReply() {
        let prefix = "PRECONDITION_FAILED - inequivalent arg 'x-quorum-initial-group-size' for queue 'q' in vhost '/': "
        #expect(RabbitMQBroker.existingReplicas(in: prefix + "received the value '3' of type 'long' but current is none") == nil)
        #expect(RabbitMQBroker.existingReplicas(in: prefix + "received '3' but current is '2'") == 2)
        #expect(RabbitMQBroker.existingReplicas(in: prefix + "received none but current is the value '5' of type 'long'") == 5)
    }
}
