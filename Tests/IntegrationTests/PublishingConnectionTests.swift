import Foundation
import SluiceAMQP
import SluiceCore
import SluiceRabbitMQ
import SluiceTesting
import SluiceWire
import Testing

@Suite("A producer's second connection, used only for publishing")
struct PublishingConnectionTests {
    @Test("by default a broker publishes over two connections (two channels each); publishes use both and all land; close ends both")
    func publishesUseBothConnections() async throws {
        let name = "publishing-\(UInt32.random(in: 0...UInt32.max))"
        let h = try await TaskHarness.make(connectionName: name)
        let queue = "pubconn"
        try await h.broker.prepare(queues: [queue])
        let own = try await SharedBroker.connections(named: name)
        let publishing = try await SharedBroker.connections(named: name + " (publishing)")
        try #require(own.count == 1 && publishing.count == 1, "connections: \(own) and \(publishing)")
        #expect(publishing[0].channels == 2, "the publishing connection's channels: \(publishing[0])")
        let before = publishing[0].received

        // Calls one after another: each takes the next of the four publisher channels.
        let body = [UInt8](repeating: 0x61, count: 1000)
        let calls = 40
        for _ in 0..<calls {
            let message = OutboundMessage(exchange: h.topology.tasksExchange, routingKey: queue, body: body,
                                          properties: BasicProperties(deliveryMode: 2), mandatory: true)
            for result in try await h.broker.publish([message]) { try result.get() }
        }
        let landed = try await within(60, "the \(calls) messages to be counted") { () -> UInt32 in
            while true {
                let count = try await h.broker.queueState(h.topology.workQueue(queue)).messageCount
                if count >= calls { return count }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(landed == UInt32(calls))
        // Half of them went out on the publishing connection: the broker read their bodies from it.
        let after = try #require(try await SharedBroker.connections(named: name + " (publishing)").first)
        #expect(after.received - before >= calls / 2 * body.count, "the publishing connection read \(after.received - before) bytes")

        await h.broker.close()
        let left = try await within(60, "both connections to close") { () -> Int in
            while true {
                let open = try await SharedBroker.connections(named: name).count
                    + SharedBroker.connections(named: name + " (publishing)").count
                if open == 0 { return open }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(left == 0)
    }

    @Test("a delivery's outcome goes out only on its own connection: after that connection was lost, every one is refused as stale")
    func outcomesStayOnTheDeliverysConnection() async throws {
        let name = "publishing-stale-\(UInt32.random(in: 0...UInt32.max))"
        let h = try await TaskHarness.make(connectionName: name)
        let events = h.broker.connection.events()
        try await h.broker.prepare(queues: ["pubconn-stale-out"])
        let (task, _, stale) = try await h.deliveryInHand(queue: "pubconn-stale")
        let (properties, body) = task.encode()
        // The delivery's connection is lost; the publishing connection stays up, and its
        // channels know nothing of that loss: an outcome sent there would go out.
        #expect(try await SharedBroker.closeConnection(named: name, why: "outcome on its own connection", awaiting: events))
        #expect(try await SharedBroker.connections(named: name + " (publishing)").count == 1)
        let outcome = OutboundMessage(exchange: h.topology.tasksExchange, routingKey: "pubconn-stale-out", body: body, properties: properties)
        // Eight in a row: each call takes the next publisher channel in turn.
        for attempt in 1...8 {
            do {
                let results = try await h.broker.publish([outcome], settling: stale)
                guard case .failure(let error as AMQPError) = results[0] else { Issue.record("attempt \(attempt) published: \(results)"); continue }
                #expect(error.code == .staleDelivery, "attempt \(attempt)")
            } catch let error as AMQPError {
                #expect(error.code == .staleDelivery, "attempt \(attempt)")
            }
        }
        // Plain publishes still go out (on either connection).
        for result in try await h.broker.publish([outcome, outcome]) { try result.get() }
        let ready = try await within(60, "the plain publishes to be counted") { () -> UInt32 in
            while true {
                let count = try await h.broker.queueState(h.topology.workQueue("pubconn-stale-out")).messageCount
                if count >= 2 { return count }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(ready == 2, "only the plain publishes, none of the stale outcomes")
        await h.broker.close()
    }

    @Test("publisherConnections 1 opens no second connection (as `sluice worker` connects)")
    func oneConnection() async throws {
        let name = "publishing-one-\(UInt32.random(in: 0...UInt32.max))"
        let topology = try Topology(prefix: "it\(UInt32.random(in: 0...UInt32.max))")
        let broker = try await RabbitMQBroker.connect(url: AMQPURL(try await SharedBroker.url()), topology: topology,
                                                      connectionName: name, publisherConnections: 1)
        let own = try await SharedBroker.connections(named: name)
        #expect(own.count == 1 && own.first?.channels == 2, "\(own)")
        #expect(try await SharedBroker.connections(named: name + " (publishing)").isEmpty)
        await broker.close()
    }
}
