import SluiceAMQP
import SluiceLocalBroker
import SluiceTesting
import SluiceWire
import Testing

@Suite("connection.blocked / unblocked (own node)")
struct BlockedTests {
    @Test("a memory alarm blocks the connection; publishes wait and go through after it clears")
    func blockedAndUnblocked() async throws {
        let node = PrivateBroker.unique("blocked")
        try await node.start()
        defer { Task { try? await node.destroy() } }
        let connection = try await AMQPConnection.connect(.init(url: try AMQPURL(node.amqpURL), recovery: nil))
        let events = connection.events()
        let channel = try await connection.openChannel(confirms: true)
        let queue = "blocked.q"
        try await declareQuorumQueue(queue, at: AMQPURL(node.amqpURL))
        try await channel.queueDeclare(.quorum(queue))
        try await channel.publish(routingKey: queue, body: "before".bytes, properties: .persistent)

        func next(_ wanted: String) async throws {
            try await within(30, "the \(wanted) event") {
                for await event in events {
                    switch (event, wanted) {
                    case (.blocked, "blocked"), (.unblocked, "unblocked"): return
                    default: continue
                    }
                }
                Issue.record("events ended before \(wanted)")
            }
        }
        // Any memory use is now over the watermark: the broker blocks publishers.
        _ = try await node.ctl("set_vm_memory_high_watermark", "absolute", "1")
        let publishing = Task { try await channel.publish(routingKey: queue, body: "during".bytes, properties: .persistent) }
        try await next("blocked")
        #expect(connection.isBlocked)
        _ = try await node.ctl("set_vm_memory_high_watermark", "0.4")
        try await next("unblocked")
        try await within(30, "the held publish to be confirmed") { try await publishing.value }
        #expect(!connection.isBlocked)
        #expect(try await channel.queueDeclarePassive(queue).messageCount == 2)
        await connection.close()
        try await node.destroy()
    }
}
