import Foundation
import SluiceAMQP
import SluiceCore
import SluiceLocalBroker
import SluiceRabbitMQ
import SluiceTesting
import SluiceWire
import Testing

/// Connections and processes on a three-node cluster of their own
/// (`scripts/cluster`), given a URL with every node's address. One test at
/// a time: each runs three RabbitMQ nodes.
@Suite("A RabbitMQ cluster: several node addresses, nodes killed and restarted", .serialized)
struct ClusterTests {
    @Test("a connection skips a node that is down, and moves to another node when its own dies; a consumer resumes there")
    func failover() async throws {
        let cluster = PrivateCluster.unique("failover")
        try await cluster.start()
        do {
            try await exercise(cluster)
        } catch {
            try? await cluster.destroy()
            throw error
        }
        try await cluster.destroy()
    }

    private func exercise(_ cluster: PrivateCluster) async throws {
        let url = try AMQPURL(cluster.url())
        #expect(url.nodes.map(\.port) == [1, 2, 3].map(cluster.amqpPort))

        // Node 1 down when processes start: each connects to another one.
        try await cluster.kill(node: 1)
        var seen: Set<Int> = []
        for _ in 0..<30 {
            let connection = try await AMQPConnection.connect(.init(url: url, recovery: nil))
            let port = try #require(connection.node?.port)
            #expect(port != cluster.amqpPort(1))
            seen.insert(port)
            await connection.close()
        }
        // Each starts at a random node: both live ones get some (all 30 on
        // node 2 has odds of (2/3)^30, about 5 in a million).
        #expect(seen == [cluster.amqpPort(2), cluster.amqpPort(3)])
        try await cluster.restart(node: 1)

        // Replicas: 3 by default (every node here), or as many as asked.
        for (replicas, queue) in [(3, "rep3"), (2, "rep2")] {
            let broker = try await RabbitMQBroker.connect(url: url, topology: try Topology(prefix: "cl", replicas: replicas))
            try await broker.prepare(queues: [queue])
            await broker.close()
            let listing = try await cluster.ctl(node: 1, "-q", "list_queues", "name", "members", "--formatter", "json")
            let rows = try JSONSerialization.jsonObject(with: Data(listing.utf8)) as? [[String: Any]] ?? []
            let members = rows.first { $0["name"] as? String == "cl.q.\(queue)" }?["members"] as? [Any]
            #expect(members?.count == replicas, "\(listing)")
        }

        // A consumer on a quorum queue; its node dies.
        let connection = try await AMQPConnection.connect(.init(url: url))
        let events = connection.events()
        let channel = try await connection.openChannel(confirms: true)
        let queue = "cluster-failover-\(UInt32.random(in: 0...UInt32.max))"
        try await declareQuorumQueue(queue, at: url)
        _ = try await channel.queueDeclare(.quorum(queue))
        let consumer = try await channel.consume(queue: queue)
        let first = try #require(connection.node)
        let victim = try #require([1, 2, 3].first { cluster.amqpPort($0) == first.port })
        try await cluster.kill(node: victim)

        let recovered = try await within(120, "the connection recovering on another node") {
            for await event in events { if case .recovered = event { return true } }
            return false
        }
        #expect(recovered)
        let now = try #require(connection.node)
        #expect(now != first, "still on the node that was killed")

        // The queue (two of its three members alive) takes and delivers a
        // message through the consumer, restored on the new node.
        try await channel.publish(routingKey: queue, body: Array("after failover".utf8))
        let body = try await within(60, "the restored consumer receiving a message") {
            for try await delivery in consumer {
                try await channel.ack(delivery)
                return String(decoding: delivery.body, as: UTF8.self)
            }
            return ""
        }
        #expect(body == "after failover")
        _ = try await channel.queueDelete(queue)
        await connection.close()
        try await cluster.restart(node: victim)
    }
}
