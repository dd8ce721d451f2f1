import Foundation
import SluiceAMQP
import SluiceTesting
import SluiceWire
import Synchronization
import Testing

@Suite("AMQP round trips against the private broker")
struct RoundTripTests {
    @Test("declare, bind, publish and consume keep every property and header")
    func propertiesAndHeadersRoundTrip() async throws {
        let connection = try await SharedBroker.connect()
        let channel = try await connection.openChannel(confirms: true)
        let exchange = uniqueName("x"), queue = uniqueName("q")
        try await channel.exchangeDeclare(ExchangeDeclaration(name: exchange, type: "topic", durable: false, autoDelete: true))
        try await channel.queueDeclare(QueueDeclaration(name: queue, durable: false, autoDelete: true))
        try await channel.queueBind(queue: queue, exchange: exchange, routingKey: "emails.*")

        let headers: FieldTable = [
            "string": "héllo", "int": 42, "negative": .int32(-7), "bool": true, "double": 2.5,
            "bytes": .bytes([0, 1, 255]), "array": [1, "two", false], "nested": ["depth": ["x": 1]],
            "timestamp": .timestamp(1_700_000_000), "decimal": .decimal(scale: 2, value: 12345), "void": .void,
        ]
        let properties = BasicProperties(
            contentType: "application/json", contentEncoding: "identity", headers: headers, deliveryMode: 2,
            priority: 3, correlationId: "run-1", replyTo: "replies", expiration: "60000", messageId: "task-1",
            timestamp: 1_700_000_123, type: "emails.send", userId: "guest", appId: "sluice-tests")
        let consumer = try await channel.consume(queue: queue)
        try await channel.publish(exchange: exchange, routingKey: "emails.send", body: #"{"to":"a@b.c"}"#.bytes,
                                  properties: properties)
        let delivery = try #require(try await take(1, from: consumer).first)
        #expect(delivery.body == #"{"to":"a@b.c"}"#.bytes)
        #expect(delivery.exchange == exchange)
        #expect(delivery.routingKey == "emails.send")
        #expect(delivery.redelivered == false)
        #expect(delivery.consumerTag == consumer.tag)
        var received = delivery.properties
        // RabbitMQ stores integers as they came, and the `L`/`l` split does not matter here.
        #expect(received.headers == headers)
        received.headers = headers
        #expect(received == properties)
        try await delivery.ack()
        await connection.close()
    }

    @Test("10,000 messages round-trip with their content intact")
    func tenThousandMessages() async throws {
        let connection = try await SharedBroker.connect()
        let publisher = try await connection.openChannel(confirms: true)
        let consumerChannel = try await connection.openChannel()
        let queue = uniqueName("bulk")
        try await declareQuorumQueue(queue, at: AMQPURL(SharedBroker.url()))
        try await publisher.queueDeclare(.quorum(queue))
        let count = 10_000
        var messages: [OutboundMessage] = []
        for i in 0..<count {
            let body = "message \(i) " + String(repeating: Character(UnicodeScalar(UInt8(97 + i % 26))), count: i % 300)
            messages.append(OutboundMessage(routingKey: queue, body: body.bytes,
                                            properties: BasicProperties(deliveryMode: 2, messageId: "\(i)")))
        }
        for start in stride(from: 0, to: count, by: 1000) {
            let results = try await publisher.publish(batch: Array(messages[start..<min(start + 1000, count)]))
            for result in results { try result.get() }
        }
        #expect(try await publisher.queueDeclarePassive(queue).messageCount == UInt32(count))

        try await consumerChannel.qos(prefetchCount: 500)
        let consumer = try await consumerChannel.consume(queue: queue)
        var seen = Set<Int>()
        let received = try await within(60, "10,000 deliveries") {
            var out: [AMQPDelivery] = []
            for try await delivery in consumer {
                out.append(delivery)
                if out.count % 100 == 0 { try await delivery.ack(multiple: true) }
                if out.count == count { break }
            }
            return out
        }
        for delivery in received {
            let id = try #require(Int(delivery.properties.messageId ?? ""))
            #expect(delivery.body == messages[id].body, "content of message \(id)")
            seen.insert(id)
        }
        #expect(seen.count == count)
        try await consumer.cancel()
        #expect(try await publisher.queueDelete(queue) == 0)
        await connection.close()
    }

    @Test("passive declare reports counts; purge, unbind and delete work")
    func queueManagement() async throws {
        let connection = try await SharedBroker.connect()
        let channel = try await connection.openChannel(confirms: true)
        let exchange = uniqueName("x"), queue = uniqueName("q")
        try await channel.exchangeDeclare(ExchangeDeclaration(name: exchange, type: "direct", durable: false))
        try await channel.queueDeclare(QueueDeclaration(name: queue, durable: false, autoDelete: false))
        try await channel.queueBind(queue: queue, exchange: exchange, routingKey: "k")
        for i in 0..<3 { try await channel.publish(exchange: exchange, routingKey: "k", body: "\(i)".bytes) }
        var state = try await channel.queueDeclarePassive(queue)
        #expect(state.messageCount == 3)
        #expect(state.consumerCount == 0)

        let other = try await connection.openChannel()
        let consumer = try await other.consume(queue: queue, noAck: false)
        _ = try await take(3, from: consumer)  // unacked: not counted as ready
        state = try await channel.queueDeclarePassive(queue)
        #expect(state.consumerCount == 1)
        #expect(state.messageCount == 0)
        try await other.close()  // unacked messages go back to the queue

        #expect(try await channel.queuePurge(queue) == 3)
        try await channel.queueUnbind(queue: queue, exchange: exchange, routingKey: "k")
        try await channel.publish(exchange: exchange, routingKey: "k", body: "after unbind".bytes)
        #expect(try await channel.queueDeclarePassive(queue).messageCount == 0)
        #expect(try await channel.queueDelete(queue) == 0)
        try await channel.exchangeDelete(exchange)
        await #expect(throws: AMQPError.self) { _ = try await channel.queueDeclarePassive(queue) }
        await connection.close()
    }

    @Test("basic.get returns a message, then nil on an empty queue")
    func basicGet() async throws {
        let connection = try await SharedBroker.connect()
        let channel = try await connection.openChannel(confirms: true)
        let queue = uniqueName("get")
        try await channel.queueDeclare(QueueDeclaration(name: queue, durable: false, autoDelete: false))
        try await channel.publish(routingKey: queue, body: "one".bytes, properties: BasicProperties(messageId: "m1"))
        try await channel.publish(routingKey: queue, body: "two".bytes)
        let first = try #require(try await channel.get(queue: queue))
        #expect(first.body == "one".bytes)
        #expect(first.properties.messageId == "m1")
        #expect(first.messageCount == 1)
        try await first.ack()
        // With a consumer busy on the same channel, get still returns the right message
        // and the consumer loses nothing.
        let busy = uniqueName("busy")
        try await channel.queueDeclare(QueueDeclaration(name: busy, durable: false, autoDelete: false))
        let consumer = try await channel.consume(queue: busy)
        _ = try await channel.publish(batch: (0..<50).map { OutboundMessage(routingKey: busy, body: "\($0)".bytes) })
        let second = try #require(try await channel.get(queue: queue, noAck: true))
        #expect(second.body == "two".bytes)
        #expect(try await channel.get(queue: queue) == nil)
        let consumed = try await take(50, from: consumer, ack: true)
        #expect(consumed.map { String(decoding: $0.body, as: UTF8.self) } == (0..<50).map { "\($0)" })
        try await channel.queueDelete(busy)
        try await channel.queueDelete(queue)
        await connection.close()
    }

    @Test("basic.get while deliveries stream to a consumer on the same channel: every get returns its message, the consumer loses nothing")
    func basicGetAmidDeliveries() async throws {
        // rabbitmq-c sets aside the consumer's frames that arrive while it waits
        // for get-ok; they came first and must be handled first, or a delivery
        // takes the place of the got message (which then never completes).
        let connection = try await SharedBroker.connect()
        let channel = try await connection.openChannel(confirms: true)
        let queue = uniqueName("getmany")
        let busy = uniqueName("getbusy")
        try await channel.queueDeclare(QueueDeclaration(name: queue, durable: false, autoDelete: false))
        try await channel.queueDeclare(QueueDeclaration(name: busy, durable: false, autoDelete: false))
        let available = 3_000, streamed = 4_000
        _ = try await channel.publish(batch: (0..<available).map { OutboundMessage(routingKey: queue, body: "g\($0)".bytes) })
        let consumer = try await channel.consume(queue: busy, noAck: true)
        let publisherConnection = try await SharedBroker.connect(name: "getbusy publisher")
        let published = OneShotSignal()
        let publisher = Task {
            defer { published.fire() }
            let other = try await publisherConnection.openChannel(confirms: true)
            for start in stride(from: 0, to: streamed, by: 100) {
                _ = try await other.publish(batch: (start..<start + 100).map { OutboundMessage(routingKey: busy, body: "\($0)".bytes) })
            }
        }
        // Gets go on for as long as deliveries are being published, however
        // slow the machine (at least 40), each answered with the next message.
        var index = 0
        while index < available && (index < 40 || !published.isFired) {
            let got = try await within(60, "get \(index) amid deliveries") { try await channel.get(queue: queue, noAck: true) }
            #expect(got.map { String(decoding: $0.body, as: UTF8.self) } == "g\(index)")
            index += 1
        }
        try await publisher.value
        let consumed = try await take(streamed, from: consumer, within: 60)
        #expect(consumed.map { String(decoding: $0.body, as: UTF8.self) } == (0..<streamed).map { "\($0)" })
        try await channel.queueDelete(busy)
        try await channel.queueDelete(queue)
        await publisherConnection.close()
        await connection.close()
    }

    @Test("reject and nack: requeue redelivers, no requeue drops")
    func rejectAndNack() async throws {
        let connection = try await SharedBroker.connect()
        let channel = try await connection.openChannel(confirms: true)
        let queue = uniqueName("nack")
        try await channel.queueDeclare(QueueDeclaration(name: queue, durable: false, autoDelete: false))
        try await channel.publish(routingKey: queue, body: "a".bytes)
        let consumer = try await channel.consume(queue: queue)
        var iterator = consumer.makeAsyncIterator()
        let first = try #require(try await iterator.next())
        #expect(first.redelivered == false)
        try await first.nack(requeue: true)
        let again = try #require(try await iterator.next())
        #expect(again.body == "a".bytes)
        #expect(again.redelivered == true)
        try await again.reject(requeue: false)
        try await consumer.cancel()
        #expect(try await iterator.next() == nil)
        #expect(try await channel.queueDeclarePassive(queue).messageCount == 0)
        try await channel.queueDelete(queue)
        await connection.close()
    }

    @Test("a consumer whose queue is deleted ends with consumerCancelled")
    func brokerCancelsConsumer() async throws {
        let connection = try await SharedBroker.connect()
        let channel = try await connection.openChannel()
        let admin = try await connection.openChannel()
        let queue = uniqueName("cancel")
        try await channel.queueDeclare(QueueDeclaration(name: queue, durable: false))
        let consumer = try await channel.consume(queue: queue)
        try await admin.queueDelete(queue)
        let error = await #expect(throws: AMQPError.self) {
            try await within(10, "the broker's basic.cancel") {
                for try await _ in consumer {}
            }
        }
        #expect(error?.code == .consumerCancelled)
        await connection.close()
    }

    @Test("cancelling the task that reads a consumer cancels it at the broker; basic.cancel ends its sequence")
    func consumerEnds() async throws {
        let connection = try await SharedBroker.connect()
        let channel = try await connection.openChannel()
        let admin = try await connection.openChannel()
        let queue = uniqueName("ends")
        try await admin.queueDeclare(QueueDeclaration(name: queue, durable: false))

        // A reader waiting for a delivery is cancelled: the consumer goes away.
        let consumer = try await channel.consume(queue: queue)
        let reading = Task { for try await _ in consumer {} }
        #expect(try await admin.queueDeclarePassive(queue).consumerCount == 1)
        reading.cancel()
        try await reading.value
        _ = try await eventually(10, "the broker to drop the cancelled consumer") {
            try await admin.queueDeclarePassive(queue).consumerCount == 0 ? true : nil
        }

        // basic.cancel ends the sequence; a new iterator continues where the last one stopped.
        let second = try await channel.consume(queue: queue, noAck: true)
        for i in 0..<3 { try await admin.publish(routingKey: queue, body: "\(i)".bytes) }
        var first = second.makeAsyncIterator()
        #expect(try await first.next().map { String(decoding: $0.body, as: UTF8.self) } == "0")
        let rest = try await within(10, "the other two deliveries, then the end after basic.cancel") {
            var read: [String] = []
            for try await delivery in second {
                read.append(String(decoding: delivery.body, as: UTF8.self))
                if read.count == 2 { try await second.cancel() }
            }
            return read
        }
        #expect(rest == ["1", "2"])
        try await admin.queueDelete(queue)
        await connection.close()
    }

    @Test("a reading task cancelled while deliveries keep coming stops, and so does its consumer")
    func cancelledWhileBusy() async throws {
        let connection = try await SharedBroker.connect()
        let channel = try await connection.openChannel()
        let admin = try await connection.openChannel()
        let queue = uniqueName("busy")
        try await admin.queueDeclare(QueueDeclaration(name: queue, durable: false))
        // Far more messages than the prefetch: acking refills the reader's
        // buffer, so it need never run dry.
        for _ in 0..<5_000 { try await admin.publish(routingKey: queue, body: "m".bytes) }
        try await channel.qos(prefetchCount: 50)
        let consumer = try await channel.consume(queue: queue)
        final class Count: Sendable {
            private let value = Mutex(0)
            func add() -> Int { value.withLock { $0 += 1; return $0 } }
            var current: Int { value.withLock { $0 } }
        }
        let count = Count()
        let reading = Task {
            for try await delivery in consumer {
                try await delivery.ack()
                if count.add() == 20 { withUnsafeCurrentTask { $0?.cancel() } }
                // A slow handler (blocking, as cancellation cannot cut it
                // short): the broker refills the buffer meanwhile.
                usleep(2_000)
            }
        }
        try await within(30, "the cancelled reader to stop") { try await reading.value }
        // What was buffered at the cancel is still read (at most the prefetch), nothing after.
        #expect(count.current <= 20 + 50 + 50, "read \(count.current) of 5,000 after cancelling at 20")
        _ = try await eventually(10, "the broker to drop the cancelled consumer") {
            try await admin.queueDeclarePassive(queue).consumerCount == 0 ? true : nil
        }
        try await admin.queueDelete(queue)
        await connection.close()
    }

    @Test("a channel error closes only that channel, with the broker's reply")
    func channelErrorIsContained() async throws {
        let connection = try await SharedBroker.connect()
        let channel = try await connection.openChannel()
        let missing = uniqueName("missing")
        let error = await #expect(throws: AMQPError.self) { _ = try await channel.queueDeclarePassive(missing) }
        #expect(error?.code == .channelClosedByBroker)
        #expect(error?.replyCode == 404)
        #expect(error?.replyText?.contains(missing) == true)
        let after = await #expect(throws: AMQPError.self) { _ = try await channel.queueDeclarePassive("anything") }
        #expect(after?.code == .channelClosedByBroker)
        // The connection and other channels carry on.
        let fresh = try await connection.openChannel()
        let queue = uniqueName("ok")
        try await fresh.queueDeclare(QueueDeclaration(name: queue, durable: false, autoDelete: true))
        #expect(connection.generation == 1)
        await connection.close()
    }
}
