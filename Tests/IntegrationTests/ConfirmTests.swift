import SluiceAMQP
import SluiceWire
import Testing

@Suite("Publisher confirms, nacks and returns")
struct ConfirmTests {
    @Test("each confirmed publish resumes its own caller")
    func acksResumeTheRightPublisher() async throws {
        let connection = try await SharedBroker.connect()
        let channel = try await connection.openChannel(confirms: true)
        let queue = uniqueName("confirm")
        try await declareQuorumQueue(queue, at: AMQPURL(SharedBroker.url()))
        try await channel.queueDeclare(.quorum(queue))
        // 200 concurrent publishers, each waiting for its own ack.
        let confirmed = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<200 {
                group.addTask {
                    try await channel.publish(routingKey: queue, body: "\(i)".bytes, properties: .persistent)
                    return i
                }
            }
            var done: [Int] = []
            for try await i in group { done.append(i) }
            return done
        }
        #expect(Set(confirmed) == Set(0..<200))
        #expect(try await channel.queueDeclarePassive(queue).messageCount == 200)
        try await channel.queueDelete(queue)
        await connection.close()
    }

    @Test("a full queue with reject-publish nacks, and publish throws")
    func nackThrows() async throws {
        let connection = try await SharedBroker.connect()
        let channel = try await connection.openChannel(confirms: true)
        let queue = uniqueName("full")
        try await channel.queueDeclare(QueueDeclaration(name: queue, durable: false, autoDelete: false, arguments: [
            "x-max-length": 1, "x-overflow": "reject-publish",
        ]))
        try await channel.publish(routingKey: queue, body: "fits".bytes)
        let error = await #expect(throws: AMQPError.self) {
            try await channel.publish(routingKey: queue, body: "overflows".bytes)
        }
        #expect(error?.code == .publishNacked)
        // In a batch, the outcome is per message.
        let results = try await channel.publish(batch: [
            OutboundMessage(routingKey: queue, body: "x".bytes), OutboundMessage(routingKey: queue, body: "y".bytes),
        ])
        #expect(results.allSatisfy { if case .failure(let e) = $0 { e.code == .publishNacked } else { false } })
        #expect(try await channel.queueDeclarePassive(queue).messageCount == 1)
        try await channel.queueDelete(queue)
        await connection.close()
    }

    @Test("a mandatory publish nobody can receive throws unroutable; a routable one succeeds")
    func mandatoryUnroutable() async throws {
        let connection = try await SharedBroker.connect()
        let channel = try await connection.openChannel(confirms: true)
        let exchange = uniqueName("x"), queue = uniqueName("q")
        try await channel.exchangeDeclare(ExchangeDeclaration(name: exchange, durable: false, autoDelete: true))
        try await channel.queueDeclare(QueueDeclaration(name: queue, durable: false, autoDelete: true))
        try await channel.queueBind(queue: queue, exchange: exchange, routingKey: "known")
        let error = await #expect(throws: AMQPError.self) {
            try await channel.publish(exchange: exchange, routingKey: "unknown", body: "lost?".bytes, mandatory: true)
        }
        #expect(error?.code == .unroutable)
        #expect(error?.replyCode == 312)
        try await channel.publish(exchange: exchange, routingKey: "known", body: "kept".bytes, mandatory: true)
        // Interleaved: only the unroutable one of a batch fails.
        let results = try await channel.publish(batch: [
            OutboundMessage(exchange: exchange, routingKey: "known", body: "1".bytes, mandatory: true),
            OutboundMessage(exchange: exchange, routingKey: "nowhere", body: "2".bytes, mandatory: true),
            OutboundMessage(exchange: exchange, routingKey: "known", body: "3".bytes, mandatory: true),
        ])
        #expect((try? results[0].get()) != nil)
        #expect((try? results[1].get()) == nil)
        #expect((try? results[2].get()) != nil)
        #expect(try await channel.queueDeclarePassive(queue).messageCount == 3)
        await connection.close()
    }
}
