import Foundation
public import SluiceAMQP
import SluiceWire

/// The raw AMQP ceiling: confirmed publishes/s and consume+ack/s through
/// SluiceAMQP alone, the number every other benchmark is compared with.
public struct RawAMQPBenchmark: Sendable {
    public struct Result: Sendable {
        public var queueType: String
        public var confirmedPublishesPerSecond: Double
        public var consumeAckPerSecond: Double
    }

    public var url: AMQPURL
    public var count: Int
    public var size: Int
    public var inFlight: Int
    public var prefetch: UInt16
    public var ackEvery: Int

    public init(url: AMQPURL, count: Int, size: Int = 100, inFlight: Int = 1024, prefetch: UInt16 = 1000, ackEvery: Int = 1) {
        self.url = url
        self.count = count
        self.size = size
        self.inFlight = inFlight
        self.prefetch = prefetch
        self.ackEvery = ackEvery
    }

    /// Publishes `count` persistent messages to a fresh queue of `queueType`
    /// (every confirm awaited), then consumes and acks them all (or, with
    /// `consume` false, deletes the queue; the consume rate is then 0).
    public func run(queueType: String, consume: Bool = true) async throws -> Result {
        let connection = try await AMQPConnection.connect(.init(url: url, connectionName: "sluice bench", confirmWindow: inFlight))
        defer { Task { await connection.close() } }
        let channel = try await connection.openChannel(confirms: true)
        let queue = "sluice.bench.\(queueType).\(UInt32.random(in: 0...UInt32.max))"
        try await channel.queueDeclare(QueueDeclaration(name: queue, arguments: ["x-queue-type": .string(queueType)]))
        let message = OutboundMessage(routingKey: queue, body: [UInt8](repeating: 0x61, count: size), properties: .persistent)

        let start = ContinuousClock.now
        try await pipelined(count: count, inFlight: inFlight) { n in
            for result in try await channel.publish(batch: Array(repeating: message, count: n)) { try result.get() }
        }
        let publishSeconds = seconds(since: start)
        guard consume else {
            try await channel.queueDelete(queue)
            await connection.close()
            return Result(queueType: queueType, confirmedPublishesPerSecond: Double(count) / publishSeconds, consumeAckPerSecond: 0)
        }

        let consumerChannel = try await connection.openChannel()
        try await consumerChannel.qos(prefetchCount: prefetch)
        let consumeStart = ContinuousClock.now
        let consumer = try await consumerChannel.consume(queue: queue)
        var received = 0
        for try await delivery in consumer {
            received += 1
            if received % ackEvery == 0 || received == count { try await delivery.ack(multiple: ackEvery > 1) }
            if received == count { break }
        }
        let consumeSeconds = seconds(since: consumeStart)
        try await consumer.cancel()
        try await channel.queueDelete(queue)
        await connection.close()
        return Result(queueType: queueType, confirmedPublishesPerSecond: Double(count) / publishSeconds,
                      consumeAckPerSecond: Double(count) / consumeSeconds)
    }

    /// Sequential publish → consumer round trips on an idle broker, in microseconds, sorted.
    public func roundTrips(_ n: Int) async throws -> [Int] {
        let connection = try await AMQPConnection.connect(.init(url: url, connectionName: "sluice bench latency"))
        let channel = try await connection.openChannel()
        let queue = "sluice.bench.latency.\(UInt32.random(in: 0...UInt32.max))"
        try await channel.queueDeclare(QueueDeclaration(name: queue, durable: false, exclusive: true, autoDelete: true))
        let consumer = try await channel.consume(queue: queue, noAck: true)
        var iterator = consumer.makeAsyncIterator()
        var micros: [Int] = []
        micros.reserveCapacity(n)
        for i in 0..<n {
            let start = ContinuousClock.now
            try await channel.publish(routingKey: queue, body: Array("\(i)".utf8))
            guard try await iterator.next() != nil else { break }
            micros.append(microseconds(ContinuousClock.now - start))
        }
        try await channel.queueDelete(queue)
        await connection.close()
        return micros.sorted()
    }
}

extension RawAMQPBenchmark {
    /// Publish-to-consume latency through a durable queue of `queueType`, the
    /// path a task takes with nothing of Sluice's in it: `count` persistent
    /// messages sent open loop at `rate`/s on a confirm channel (each send on
    /// its own task, as the task benchmark enqueues), consumed with
    /// prefetch `prefetch` and acked one by one. Microseconds, sorted.
    ///
    /// A quorum queue hands a message to its consumer only once the message
    /// is committed to its log, so this, not a transient classic queue's round
    /// trip, is the floor under enqueue-to-start of a task.
    public func latency(count n: Int, rate: Int, queueType: String, prefetch: UInt16 = 300) async throws -> [Int] {
        guard n > 0 else { return [] }
        let connection = try await AMQPConnection.connect(.init(url: url, connectionName: "sluice bench raw latency"))
        let queue = "sluice.bench.latency.\(queueType).\(UInt32.random(in: 0...UInt32.max))"
        // Whatever happens, the durable queue (if declared) and the connection
        // go before this returns: the deletion is work for the broker that must
        // not overlap what runs next. On a channel of its own, as the error may
        // have closed the others.
        func removeQueueAndClose() async {
            if let channel = try? await connection.openChannel() { _ = try? await channel.queueDelete(queue) }
            await connection.close()
        }
        do {
            let publisher = try await connection.openChannel(confirms: true)
            try await publisher.queueDeclare(QueueDeclaration(name: queue, arguments: ["x-queue-type": .string(queueType)]))
            let consumerChannel = try await connection.openChannel()
            try await consumerChannel.qos(prefetchCount: prefetch)
            let consumer = try await consumerChannel.consume(queue: queue)
            let interval = Duration.nanoseconds(1_000_000_000 / Int64(max(1, rate)))
            let micros = try await withThrowingTaskGroup(of: [Int].self) { group in
                group.addTask {
                    var micros: [Int] = []
                    micros.reserveCapacity(n)
                    for try await delivery in consumer {
                        let sent = delivery.body.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                        micros.append(Int((DispatchTime.now().uptimeNanoseconds - sent) / 1000))
                        try await delivery.ack()
                        if micros.count == n { break }
                    }
                    return micros
                }
                let start = ContinuousClock.now
                for i in 0..<n {
                    try await Task.sleep(until: start + interval * i, clock: .continuous)
                    group.addTask {
                        var sent = DispatchTime.now().uptimeNanoseconds
                        let body = withUnsafeBytes(of: &sent) { Array($0) }
                        try await publisher.publish(OutboundMessage(routingKey: queue, body: body, properties: .persistent))
                        return []
                    }
                }
                var all: [Int] = []
                for try await part in group { all += part }
                return all
            }
            try await consumer.cancel()
            guard micros.count == n else {
                throw AMQPError(.channelClosed, operation: "bench latency", message: "the consumer ended after \(micros.count) of \(n) messages")
            }
            await removeQueueAndClose()
            return micros.sorted()
        } catch {
            await removeQueueAndClose()
            throw error
        }
    }
}

/// Runs `body(n)` for batches of at most 512 that add up to `count`, with
/// enough batches at once to keep `inFlight` messages unconfirmed.
func pipelined(count: Int, inFlight: Int, _ body: @escaping @Sendable (Int) async throws -> Void) async throws {
    let batchSize = min(inFlight, 512)
    let concurrent = max(1, inFlight / batchSize) + 1
    try await withThrowingTaskGroup(of: Void.self) { group in
        var sent = 0, running = 0
        while sent < count {
            if running == concurrent {
                try await group.next()
                running -= 1
            }
            let n = min(batchSize, count - sent)
            sent += n
            running += 1
            group.addTask { try await body(n) }
        }
        try await group.waitForAll()
    }
}

func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

func microseconds(_ d: Duration) -> Int {
    Int(d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000)
}

/// The value at quantile `q` of sorted samples.
public func percentile(_ sorted: [Int], _ q: Double) -> Int {
    sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]
}
