import Foundation
import SluiceAMQP
import SluiceLocalBroker
import SluiceTesting
import SluiceWire
import Synchronization
import Testing

@Suite("Recovery after a broker restart (own node)")
struct RecoveryTests {
    @Test("publisher and consumer resume by themselves; no confirmed message is lost")
    func brokerRestart() async throws {
        let node = PrivateBroker.unique("recovery")
        try await node.start()
        defer { Task { try? await node.destroy() } }

        let url = try AMQPURL(node.amqpURL)
        let connection = try await AMQPConnection.connect(.init(
            url: url, connectionName: "recovery test",
            recovery: .init(backoff: ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(1)))))
        let events = connection.events()
        let publisher = try await connection.openChannel(confirms: true)
        let consumerChannel = try await connection.openChannel()
        let queue = "recovery.q"
        try await declareQuorumQueue(queue, at: url)
        try await publisher.queueDeclare(.quorum(queue))
        try await consumerChannel.qos(prefetchCount: 50)
        let consumer = try await consumerChannel.consume(queue: queue)

        let confirmed = Mutex<Set<Int>>([])
        let received = Mutex<Set<Int>>([])
        let staleAcks = Mutex(0)
        let stop = Mutex(false)

        // Publisher: publish numbered messages; on a connection error, try the same number again.
        let publishing = Task {
            var i = 0
            while !stop.withLock({ $0 }) {
                do {
                    try await publisher.publish(routingKey: queue, body: "\(i)".bytes, properties: .persistent)
                    confirmed.withLock { _ = $0.insert(i) }
                    i += 1
                } catch let error as AMQPError where error.code == .connectionLost || error.code == .connectionClosedByBroker {
                    try await Task.sleep(for: .milliseconds(20))  // back off; the connection recovers by itself
                }
            }
        }
        // Consumer: record and ack; acks of deliveries from the lost connection must fail as stale.
        let consuming = Task {
            for try await delivery in consumer {
                received.withLock { _ = $0.insert(Int(String(decoding: delivery.body, as: UTF8.self))!) }
                do {
                    try await delivery.ack()
                } catch let error as AMQPError where error.code == .staleDelivery {
                    staleAcks.withLock { $0 += 1 }
                } catch let error as AMQPError where error.code == .connectionLost {
                    // Lost between receipt and ack; the broker redelivers it.
                }
            }
        }

        func waitUntil(_ what: String, seconds: Double = 60, _ condition: @escaping @Sendable () -> Bool) async throws {
            try await within(seconds, what) {
                while !condition() { try await Task.sleep(for: .milliseconds(20)) }
            }
        }
        try await waitUntil("the first 200 confirmed messages") { confirmed.withLock { $0.count } >= 200 }

        try await node.stop()
        let recoveredEvent = Task {
            for await event in events {
                if case .recovered(let lost) = event { return lost.count }
            }
            return -1
        }
        let beforeRestart = confirmed.withLock { $0.count }
        try await node.start()
        let lostCount = try await within(60, "the recovered event") { await recoveredEvent.value }
        #expect(lostCount >= 0)
        #expect(lostCount <= 50, "at most the prefetch (50) can have been unacked when the connection died")
        #expect(connection.generation == 2)

        try await waitUntil("publishing to resume after the restart") { confirmed.withLock { $0.count } >= beforeRestart + 200 }
        stop.withLock { $0 = true }
        try await publishing.value
        let allConfirmed = confirmed.withLock { $0 }
        try await waitUntil("every confirmed message to be consumed") {
            received.withLock { allConfirmed.isSubset(of: $0) }
        }
        #expect(allConfirmed.isSubset(of: received.withLock { $0 }))

        consuming.cancel()
        await connection.close()
        try await node.destroy()
    }

    @Test("a call made while the broker is down waits for recovery, and can be cancelled")
    func callsWaitForRecovery() async throws {
        let node = PrivateBroker.unique("waits")
        try await node.start()
        defer { Task { try? await node.destroy() } }
        let connection = try await AMQPConnection.connect(.init(
            url: try AMQPURL(node.amqpURL),
            recovery: .init(backoff: ReconnectBackoff(initial: .milliseconds(100), maximum: .milliseconds(500)))))
        let channel = try await connection.openChannel()
        let events = connection.events()
        let queue = "waits.q"
        try await declareQuorumQueue(queue, at: AMQPURL(node.amqpURL))
        try await channel.queueDeclare(.quorum(queue))
        try await node.stop()
        _ = try await within(30, "the disconnected event") {
            for await event in events { if case .disconnected = event { return true } }
            return false
        }
        // Cancelled while waiting: resumed at once with CancellationError.
        let cancelled = Task { try await channel.queueDeclarePassive(queue) }
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { _ = try await cancelled.value }
        // Not cancelled: completes after the broker is back.
        let waiting = Task { try await channel.queueDeclarePassive(queue) }
        try await node.start()
        let state = try await within(60, "the call made during the outage") { try await waiting.value }
        #expect(state.name == queue)
        await connection.close()
        try await node.destroy()
    }

    @Test("deliveries of the lost connection are reported, cannot be acked, and come again")
    func lostDeliveries() async throws {
        let node = PrivateBroker.unique("lost")
        try await node.start()
        defer { Task { try? await node.destroy() } }
        let connection = try await AMQPConnection.connect(.init(
            url: try AMQPURL(node.amqpURL),
            recovery: .init(backoff: ReconnectBackoff(initial: .milliseconds(100), maximum: .milliseconds(500)))))
        let events = connection.events()
        let channel = try await connection.openChannel(confirms: true)
        let queue = "lost.q"
        try await declareQuorumQueue(queue, at: AMQPURL(node.amqpURL))
        try await channel.queueDeclare(.quorum(queue))
        try await channel.qos(prefetchCount: 10)
        for body in ["a", "b", "c"] { try await channel.publish(routingKey: queue, body: body.bytes, properties: .persistent) }
        let consumer = try await channel.consume(queue: queue)
        var iterator = consumer.makeAsyncIterator()
        var held: [AMQPDelivery] = []
        for _ in 0..<3 { held.append(try #require(try await iterator.next())) }

        try await node.stop()
        try await node.start()
        let lost = try await within(60, "the recovered event") { () -> [LostDelivery] in
            for await event in events { if case .recovered(let lost) = event { return lost } }
            return []
        }
        #expect(Set(lost.map(\.deliveryTag)) == Set(held.map(\.deliveryTag)))
        #expect(lost.allSatisfy { $0.consumerTag == consumer.tag && $0.channel == channel.id })
        let error = await #expect(throws: AMQPError.self) { try await held[0].ack() }
        #expect(error?.code == .staleDelivery)

        // The same consumer goes on and gets the three messages again.
        let again = try await within(60, "the redeliveries") {
            var bodies: [String] = []
            var redeliveries = consumer.makeAsyncIterator()
            for _ in 0..<3 {
                let d = try #require(try await redeliveries.next())
                bodies.append(String(decoding: d.body, as: UTF8.self))
                try await d.ack()
            }
            return bodies
        }
        #expect(again.sorted() == ["a", "b", "c"])
        await connection.close()
        try await node.destroy()
    }
}
