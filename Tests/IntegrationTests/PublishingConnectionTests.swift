import Foundation
import SluiceAMQP
import SluiceCore
import SluiceLocalBroker
import SluiceRabbitMQ
import SluiceTesting
import SluiceWire
import Testing

@Suite("A producer's connection used only for publishing")
struct PublishingConnectionTests {
    /// A harness with one publishing connection, its connection name, and `queue` prepared.
    static func harness(_ base: String, queue: String) async throws -> (name: String, h: TaskHarness) {
        let name = "\(base)-\(UInt32.random(in: 0...UInt32.max))"
        let h = try await TaskHarness.make(connectionName: name, publishingConnections: 1)
        try await h.broker.prepare(queues: [queue])
        return (name, h)
    }

    @Test("with a publishing connection a broker publishes over two connections (two channels each); publishes use both and all land; close ends both")
    func publishesUseBothConnections() async throws {
        let queue = "pubconn"
        let (name, h) = try await Self.harness("publishing", queue: queue)
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
        try await h.waitForReady(queue, count: calls, seconds: 60)
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
        let h = try await TaskHarness.make(connectionName: name, publishingConnections: 1)
        let events = h.broker.connection.events()
        try await h.broker.prepare(queues: ["pubconn-stale-out"])
        let (task, _, stale) = try await h.deliveryInHand(queue: "pubconn-stale")
        let (properties, body) = task.encode()
        // The delivery's connection is lost; the publishing connection stays up, and its
        // channels know nothing of that loss (its generation is still the stale receipt's,
        // the first): an outcome sent there would go out.
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
        // Exactly two: only the plain publishes, none of the stale outcomes.
        try await h.waitForReady("pubconn-stale-out", count: 2, seconds: 60)
        await h.broker.close()
    }

    @Test("the publishing connection closed by the broker comes back with its channels, and publishes go on over both connections")
    func publishingConnectionRecovers() async throws {
        let queue = "pubconn-recover"
        let (name, h) = try await Self.harness("publishing-recover", queue: queue)
        let lost = try #require(try await SharedBroker.connections(named: name + " (publishing)").first)
        _ = try await SharedBroker.node.ctl("close_connection", lost.pid, "test: publishing connection recovery")
        // Nothing is published while it is down (a publish caught by the close may or may not
        // have landed): wait for the new connection, with both its channels.
        let back = try await within(120, "the publishing connection to come back with two channels") { () -> (pid: String, channels: Int, received: Int) in
            while true {
                if let again = try await SharedBroker.connections(named: name + " (publishing)").first, again.pid != lost.pid, again.channels == 2 {
                    return again
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        // Eight calls in a row: two rounds over the four channels, two of each round on the new connection.
        let body = [UInt8](repeating: 0x62, count: 1000)
        for call in 1...8 {
            let message = OutboundMessage(exchange: h.topology.tasksExchange, routingKey: queue, body: body,
                                          properties: BasicProperties(deliveryMode: 2), mandatory: true)
            for result in try await h.broker.publish([message]) { #expect((try? result.get()) != nil, "call \(call): \(result)") }
        }
        try await h.waitForReady(queue, count: 8, seconds: 60)
        let after = try #require(try await SharedBroker.connections(named: name + " (publishing)").first)
        #expect(after.pid == back.pid && after.received - back.received >= 4 * body.count,
                "the new publishing connection read \(after.received - back.received) bytes")
        await h.broker.close()
    }

    @Test("a publisher channel the broker closed is replaced on its own connection")
    func replacedOnItsConnection() async throws {
        let queue = "pubconn-replace"
        let (name, h) = try await Self.harness("publishing-replace", queue: queue)
        // A publish to a missing exchange makes the broker close its channel (404): four
        // in a row, one per publisher channel.
        let bad = OutboundMessage(exchange: "\(h.topology.prefix).no-such-exchange", routingKey: queue, body: [])
        for _ in 0..<4 { _ = try? await h.broker.publish([bad]) }
        // Each closed channel is replaced (at most once a second per channel): publish
        // until every channel takes its message again.
        let good = OutboundMessage(exchange: h.topology.tasksExchange, routingKey: queue, body: Array("{}".utf8),
                                   properties: BasicProperties(deliveryMode: 2))
        try await within(60, "every publisher channel to be replaced") {
            while true {
                var succeeded = 0
                for _ in 0..<4 where (try? await h.broker.publish([good]))?.allSatisfy({ (try? $0.get()) != nil }) == true { succeeded += 1 }
                if succeeded == 4 { return }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        // The replacements of the publishing connection's channels are on that connection.
        let publishing = try await SharedBroker.connections(named: name + " (publishing)")
        #expect(publishing.count == 1 && publishing.first?.channels == 2, "\(publishing)")
        await h.broker.close()
    }

    @Test("sluice enqueue --count (batches in flight, the last one short) enqueues every copy exactly once and says so")
    func enqueueCount() async throws {
        let h = try await TaskHarness.make()
        let queue = "pubconn-count"
        try await h.broker.prepare(queues: [queue])
        // Not a multiple of the 500-task batch: the last batch is short.
        let count = 2345
        let run = try await within(120, "sluice enqueue --count") {
            try await SluiceBinary.run(["enqueue", "sluice.echo", "--count", "\(count)", "--json", "--url", h.url,
                                        "--prefix", h.topology.prefix, "--queue", queue])
        }
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains(#""enqueued" : \#(count)"#), "\(run.output)")
        #expect(run.output.contains(#""failed" : 0"#), "\(run.output)")
        try await h.waitForReady(queue, count: count, seconds: 60)
        await h.broker.close()
    }

    @Test("by default no publishing connection is opened (as `sluice worker` connects)")
    func noneByDefault() async throws {
        let name = "publishing-none-\(UInt32.random(in: 0...UInt32.max))"
        // RabbitMQBroker.connect's own default (the harness passes a number).
        let broker = try await RabbitMQBroker.connect(url: AMQPURL(try await SharedBroker.url()),
                                                      topology: try Topology(prefix: "it\(UInt32.random(in: 0...UInt32.max))"), connectionName: name)
        let own = try await SharedBroker.connections(named: name)
        #expect(own.count == 1 && own.first?.channels == 2, "\(own)")
        #expect(try await SharedBroker.connections(named: name + " (publishing)").isEmpty)
        await broker.close()
    }
}
