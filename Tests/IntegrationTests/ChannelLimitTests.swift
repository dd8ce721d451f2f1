import SluiceAMQP
import SluiceTesting
import SluiceWire
import Testing

/// A connection's channel numbers are few (`channel_max`); callers that each
/// hold a channel briefly must queue for them, not fail, when they outnumber it.
@Suite("Channels: more callers than channel numbers")
struct ChannelLimitTests {
    /// A connection allowed 4 channels (or `channelMax`).
    private func connect(channelMax: Int = 4, rpcTimeout: Duration = .seconds(30)) async throws -> AMQPConnection {
        var url = try AMQPURL(await SharedBroker.url())
        url.channelMax = channelMax
        return try await AMQPConnection.connect(.init(url: url, connectionName: "channel limit test", recovery: nil, rpcTimeout: rpcTimeout))
    }

    /// The connection's 4 channels, opened and kept.
    private func holdEveryChannel(of connection: AMQPConnection) async throws -> [AMQPChannel] {
        var held: [AMQPChannel] = []
        for _ in 0..<4 { held.append(try await connection.openChannel()) }
        return held
    }

    @Test("60 callers at once on a connection of 4 channels each get a channel in turn, and all finish")
    func burstQueues() async throws {
        let connection = try await connect()
        let done = try await within(60, "60 callers to open, use and close a channel") {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<60 {
                    group.addTask {
                        let channel = try await connection.openChannel()
                        try await channel.exchangeDeclarePassive("amq.direct")
                        try await channel.close()
                    }
                }
                var done = 0
                for try await _ in group { done += 1 }
                return done
            }
        }
        #expect(done == 60)
        await connection.close()
    }

    @Test("with every channel held, an open fails after the RPC timeout with a clear error, and the wait keeps no number")
    func waitIsBounded() async throws {
        // 5 s: every RPC of this connection has that long, on a loaded machine too.
        let connection = try await connect(rpcTimeout: .seconds(5))
        var held = try await holdEveryChannel(of: connection)
        let error = await #expect(throws: AMQPError.self) {
            _ = try await within(30, "the fifth open to give up") { try await connection.openChannel() }
        }
        // It waited for a channel to close before it gave up.
        #expect(error.map { "\($0)".contains("all 4 channels are in use (waited") } == true, "\(String(describing: error))")
        // One closed: exactly one number is free (the expired wait took none).
        try await held.removeFirst().close()
        held.append(try await within(30, "an open once a channel is closed") { try await connection.openChannel() })
        await #expect(throws: AMQPError.self) {
            _ = try await within(30, "a further open to give up") { try await connection.openChannel() }
        }
        await connection.close()
    }

    @Test("a waiting open that is cancelled returns at once, and the next channel closed goes to the next caller")
    func cancelledWait() async throws {
        let connection = try await connect(rpcTimeout: .seconds(120))
        var held = try await holdEveryChannel(of: connection)
        let waiting = Task { try await connection.openChannel() }
        // Queued on the connection thread (no event says so: polled, bounded).
        try await within(20, "the fifth open to wait for a channel") {
            while connection.channelOpensWaiting < 1 { try await Task.sleep(for: .milliseconds(10)) }
        }
        waiting.cancel()
        let outcome = try await within(20, "the cancelled open to return") { await waiting.result }
        #expect(throws: CancellationError.self) { try outcome.get() }
        // Had the cancelled caller been given the number, this would wait the full 120 s.
        try await held.removeFirst().close()
        held.append(try await within(20, "an open once a channel is closed") { try await connection.openChannel() })
        #expect(connection.channelOpensWaiting == 0, "the cancelled open was skipped")
        await connection.close()
    }

    @Test("a channel number freed while its consumer's deliveries stream in goes to the next channel clean: the old channel's deliveries never reach it")
    func numberReusedUnderFlow() async throws {
        let queue = uniqueName("channel-reuse")
        // Another connection keeps the queue full, so that deliveries are on
        // the wire whenever the consuming channel closes.
        let filler = try await SharedBroker.connect()
        let fill = try await filler.openChannel(confirms: true)
        try await fill.queueDeclare(QueueDeclaration(name: queue, durable: false, autoDelete: false))
        let batch = Array(repeating: OutboundMessage(routingKey: queue, body: Array(repeating: 0x61, count: 64)), count: 1_000)
        _ = try await fill.publish(batch: batch)
        let filling = Task {
            while !Task.isCancelled { _ = try await fill.publish(batch: batch) }
        }
        // One channel number: each new channel takes the number the last one had.
        let connection = try await connect(channelMax: 1)
        var channel = try await connection.openChannel()
        for round in 1...12 {
            // Without acknowledgements the broker sends as fast as it can.
            let consumer = try await channel.consume(queue: queue, noAck: true)
            // Read here only, by one task at a time; iterating to the end would cancel the consumer.
            nonisolated(unsafe) let deliveries = consumer.makeReader()
            _ = try await within(30, "round \(round): a delivery") { try await deliveries.next() }
            // The next open waits for the number first; then the close frees it,
            // and the connection thread hands it over at once. Deliveries that
            // came during the close are set aside by rabbitmq-c by then.
            let next = Task { try await connection.openChannel() }
            try await within(20, "round \(round): the next open to wait for the number") {
                while connection.channelOpensWaiting < 1 { try await Task.sleep(for: .milliseconds(5)) }
            }
            try await channel.close()
            channel = try await within(30, "round \(round): the next channel") { try await next.value }
            // Had it taken the old channel's deliveries for its own, it would
            // reject them (no consumer of that tag here): an unknown delivery
            // tag on this channel, which the broker closes for it.
            try await channel.exchangeDeclarePassive("amq.direct")
            try await channel.exchangeDeclarePassive("amq.direct")
        }
        filling.cancel()
        _ = await filling.result
        _ = try await fill.queueDelete(queue)
        await connection.close()
        await filler.close()
    }
}
