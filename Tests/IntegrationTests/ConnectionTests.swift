import Foundation
import SluiceAMQP
import SluiceTesting
import SluiceWire
import Synchronization
import Testing

@Suite("Connections: login, heartbeats")
struct ConnectionTests {
    @Test("bad credentials give an authentication error, not a hang")
    func badCredentials() async throws {
        var wrong = try AMQPURL(await SharedBroker.url())
        wrong.password = "definitely-wrong"
        let url = wrong
        let error = await #expect(throws: AMQPError.self) {
            _ = try await within(20, "the login to fail") {
                try await AMQPConnection.connect(.init(url: url, recovery: nil))
            }
        }
        #expect(error?.code == .authenticationFailed)
        #expect(error?.replyCode == 403)
        #expect(error.map { "\($0)".contains("definitely-wrong") } == false, "the password must not be in the error")
    }

    @Test("an unknown vhost is refused with a clear error")
    func unknownVhost() async throws {
        var wrong = try AMQPURL(await SharedBroker.url())
        wrong.vhost = "no-such-vhost"
        let url = wrong
        let error = await #expect(throws: AMQPError.self) {
            _ = try await AMQPConnection.connect(.init(url: url, recovery: nil))
        }
        #expect(error?.code == .accessRefused)
    }

    @Test("nothing listening gives connectionFailed")
    func nothingListening() async throws {
        let url = try AMQPURL("amqp://guest:guest@127.0.0.1:1/?connection_timeout=2000")
        let error = await #expect(throws: AMQPError.self) {
            _ = try await AMQPConnection.connect(.init(url: url, recovery: nil))
        }
        #expect(error?.code == .connectionFailed)
    }

    @Test("an idle connection with a 3 s heartbeat stays alive past three heartbeats")
    func heartbeatKeepsIdleConnectionAlive() async throws {
        var url = try AMQPURL(await SharedBroker.url())
        // 3 s, not 1 s: a peer is declared dead after two silent intervals,
        // and on a loaded CI machine (the whole suite in parallel on two
        // cores) a 1 s interval once saw 2 s pass without the broker's
        // heartbeat being read. What is tested is that idle heartbeats are
        // exchanged at all, not how tight the interval can be.
        url.heartbeatSeconds = 3
        let connection = try await AMQPConnection.connect(.init(url: url, connectionName: "heartbeat test", recovery: nil))
        let events = connection.events()
        let channel = try await connection.openChannel()
        let queue = uniqueName("hb")
        try await channel.queueDeclare(QueueDeclaration(name: queue, durable: false, autoDelete: true))
        // Idle time is what this test is about: both sides must exchange
        // heartbeats for the broker (and we) to keep the connection.
        try await Task.sleep(for: .seconds(10))
        let state = try await channel.queueDeclarePassive(queue)
        #expect(state.messageCount == 0)
        #expect(connection.generation == 1)
        await connection.close()
        var seen: [String] = []
        for await event in events { seen.append("\(event)") }
        #expect(seen.count == 1, "only the final close, no disconnect: \(seen)")
    }

    @Test("a cancelled caller is resumed at once")
    func cancellationIsHonoured() async throws {
        let connection = try await SharedBroker.connect()
        let channel = try await connection.openChannel()
        let queue = uniqueName("cancelled")
        try await channel.queueDeclare(QueueDeclaration(name: queue, durable: false, autoDelete: true))
        let consumer = try await channel.consume(queue: queue)
        let waiting = Task { try await take(1, from: consumer, within: 60) }
        waiting.cancel()
        // Ends well before the 60 s wait inside: with CancellationError, or
        // with no delivery (a cancelled stream iteration simply finishes).
        // (30 s, not less: on a loaded CI machine 5 s once passed before the
        // task was even scheduled; what is tested is "not the 60 s".)
        let result = try await within(30, "the cancelled consumer to return") { await waiting.result }
        let received = try? result.get()
        #expect(received == nil || received?.isEmpty == true)
        await connection.close()
    }
}
