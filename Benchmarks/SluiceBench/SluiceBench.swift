import ArgumentParser
import Foundation
import SluiceAMQP

@main
struct SluiceBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice-bench",
        abstract: "Measures Sluice against a RabbitMQ broker.",
        subcommands: [AMQPBench.self])
}

/// The raw AMQP ceiling: confirmed publishes/s and consume+ack/s through
/// SluiceAMQP, the number every later benchmark is compared with.
struct AMQPBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "amqp",
        abstract: "Confirmed publishes/s and consume+ack/s for quorum and classic queues.",
        discussion: """
        Publishes --count persistent messages of --size bytes to a fresh queue on a \
        confirm channel, --in-flight at a time, and waits for every broker ack; then \
        consumes them all with prefetch --prefetch, acking each one (or every \
        --ack-every). Each queue is deleted afterwards.
        """)

    @Option(help: "Broker URL (default: $SLUICE_URL, then the local dev broker).")
    var url: String?
    @Option(help: "Messages per queue type.")
    var count = 100_000
    @Option(help: "Body size in bytes.")
    var size = 100
    @Option(help: "Unconfirmed publishes allowed at once.")
    var inFlight = 1024
    @Option(help: "Consumer prefetch.")
    var prefetch: UInt16 = 1000
    @Option(help: "Ack with multiple=true every N deliveries (1 = ack each one).")
    var ackEvery = 1
    @Option(help: "Queue types to measure, comma-separated.")
    var queueTypes = "quorum,classic"
    @Option(help: "Sequential publish-to-consumer round trips for the latency figures (0 skips them).")
    var roundTrips = 2000
    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() async throws {
        let urlString = url ?? ProcessInfo.processInfo.environment["SLUICE_URL"] ?? "amqp://guest:guest@127.0.0.1:27170/%2f"
        let amqpURL = try AMQPURL(urlString)
        guard count > 0, size >= 0, inFlight > 0, ackEvery > 0 else {
            throw ValidationError("--count, --in-flight and --ack-every must be positive")
        }
        var results: [[String: Any]] = []
        if !json {
            print("broker \(amqpURL), \(count) persistent messages of \(size) B, \(inFlight) in flight, prefetch \(prefetch), ack every \(ackEvery)")
        }
        for type in queueTypes.split(separator: ",").map(String.init) {
            guard type == "quorum" || type == "classic" else { throw ValidationError("unknown queue type \(type)") }
            let connection = try await AMQPConnection.connect(.init(url: amqpURL, connectionName: "sluice-bench", confirmWindow: inFlight))
            let (publishRate, consumeRate) = try await measure(connection, type: type)
            await connection.close()
            results.append(["queue_type": type, "confirmed_publishes_per_s": publishRate.rounded(), "consume_ack_per_s": consumeRate.rounded()])
            if !json {
                print("\(type.padding(toLength: 8, withPad: " ", startingAt: 0)) confirmed publish \(format(publishRate))/s   consume+ack \(format(consumeRate))/s")
            }
        }
        if roundTrips > 0 {
            let connection = try await AMQPConnection.connect(.init(url: amqpURL, connectionName: "sluice-bench latency"))
            let micros = try await roundTripLatencies(connection)
            await connection.close()
            let p = { (q: Double) in micros[min(micros.count - 1, Int(Double(micros.count) * q))] }
            results.append(["round_trip_us": ["p50": p(0.5), "p99": p(0.99), "max": micros.last!], "round_trips": roundTrips])
            if !json {
                print("round trip (publish → consumer, idle broker, \(roundTrips)×): p50 \(p(0.5)) µs  p99 \(p(0.99)) µs  max \(micros.last!) µs")
            }
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: ["count": count, "size": size, "results": results], options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }

    private func measure(_ connection: AMQPConnection, type: String) async throws -> (Double, Double) {
        let channel = try await connection.openChannel(confirms: true)
        let queue = "sluice.bench.\(type).\(UInt32.random(in: 0...UInt32.max))"
        try await channel.queueDeclare(QueueDeclaration(name: queue, arguments: ["x-queue-type": .string(type)]))
        let body = [UInt8](repeating: 0x61, count: size)
        let message = OutboundMessage(routingKey: queue, body: body, properties: .persistent)

        // Publish: batches pipelined under the channel's confirm window.
        let batchSize = min(inFlight, 512)
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            var sent = 0
            var running = 0
            let concurrent = max(1, inFlight / batchSize) + 1
            while sent < count {
                if running == concurrent {
                    try await group.next()
                    running -= 1
                }
                let n = min(batchSize, count - sent)
                sent += n
                running += 1
                group.addTask {
                    for result in try await channel.publish(batch: Array(repeating: message, count: n)) { try result.get() }
                }
            }
            try await group.waitForAll()
        }
        let publishSeconds = seconds(ContinuousClock.now - start)

        // Consume and ack.
        let consumerChannel = try await connection.openChannel()
        try await consumerChannel.qos(prefetchCount: prefetch)
        let consumeStart = ContinuousClock.now
        let consumer = try await consumerChannel.consume(queue: queue)
        var received = 0
        for try await delivery in consumer {
            received += 1
            if received % ackEvery == 0 || received == count {
                try await delivery.ack(multiple: ackEvery > 1)
            }
            if received == count { break }
        }
        let consumeSeconds = seconds(ContinuousClock.now - consumeStart)
        try await consumer.cancel()
        try await channel.queueDelete(queue)
        return (Double(count) / publishSeconds, Double(count) / consumeSeconds)
    }

    /// One message at a time from publish to the consumer's loop: the latency
    /// the connection thread adds on an idle broker.
    private func roundTripLatencies(_ connection: AMQPConnection) async throws -> [Int] {
        let channel = try await connection.openChannel()
        let queue = "sluice.bench.latency.\(UInt32.random(in: 0...UInt32.max))"
        try await channel.queueDeclare(QueueDeclaration(name: queue, durable: false, exclusive: true, autoDelete: true))
        let consumer = try await channel.consume(queue: queue, noAck: true)
        var iterator = consumer.makeAsyncIterator()
        var micros: [Int] = []
        micros.reserveCapacity(roundTrips)
        for i in 0..<roundTrips {
            let start = ContinuousClock.now
            try await channel.publish(routingKey: queue, body: Array("\(i)".utf8))
            guard try await iterator.next() != nil else { throw ValidationError("the consumer ended early") }
            let d = ContinuousClock.now - start
            micros.append(Int(d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000))
        }
        try await channel.queueDelete(queue)
        return micros.sorted()
    }

    private func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    private func format(_ rate: Double) -> String {
        String(Int(rate.rounded())).padding(toLength: 7, withPad: " ", startingAt: 0)
    }
}
