import Foundation
import Logging
import ServiceLifecycle
import SluiceAMQP
import SluiceClient
import SluiceCore
import SluiceRabbitMQ
import SluiceWorker
import Synchronization

/// Task throughput and latency through Sluice's own producer and worker,
/// beside the raw AMQP ceiling measured in the same run.
public struct TaskBenchmark: Sendable {
    public struct Result: Sendable {
        public var rawConfirmedPublishesPerSecond: Double
        public var enqueuePerSecond: Double
        public var endToEndPerSecond: Double
        /// Enqueue-to-start latency at the offered rate, microseconds, sorted.
        public var startLatencies: [Int]
        public var offeredRate: Int
    }

    public var url: AMQPURL
    public var count: Int
    public var concurrency: Int
    public var latencyTasks: Int
    public var offeredRate: Int
    /// Whether the worker publishes `started` events (one more publish per task).
    public var startedEvents: Bool

    public init(url: AMQPURL, count: Int, concurrency: Int, latencyTasks: Int = 2000, offeredRate: Int = 500, startedEvents: Bool = true) {
        self.startedEvents = startedEvents
        self.url = url
        self.count = count
        self.concurrency = concurrency
        self.latencyTasks = latencyTasks
        self.offeredRate = offeredRate
    }

    public func run(progress: @Sendable (String) -> Void = { _ in }) async throws -> Result {
        progress("raw AMQP ceiling (quorum, \(count) × 100 B)...")
        let raw = try await RawAMQPBenchmark(url: url, count: count).run(queueType: "quorum")

        let topology = try Topology(prefix: "sluice-bench-\(UInt32.random(in: 0...UInt32.max))")
        let broker = try await RabbitMQBroker.connect(url: url, topology: topology, connectionName: "sluice bench tasks")
        let client = TaskClient(broker: broker)
        let queue = "bench"
        try await broker.prepare(queues: [queue])
        let arguments = Array(#"{"n":0}"#.utf8)

        progress("confirmed enqueue of \(count) tasks...")
        let enqueueStart = ContinuousClock.now
        try await pipelined(count: count, inFlight: 1024) { n in
            let results = try await client.enqueue(batch: Array(
                repeating: TaskClient.Request(name: "bench.noop", arguments: arguments, options: .init(queue: queue)), count: n))
            for r in results { _ = try r.get() }
        }
        let enqueueSeconds = seconds(since: enqueueStart)

        progress("end to end: one worker, concurrency \(concurrency)...")
        let done = Completion(target: count)
        var registry = HandlerRegistry()
        registry.register("bench.noop") { _ in nil }
        registry.register("bench.latency") { context in
            let sent = try context.decode(LatencyArguments.self).sent
            done.recordLatency(Int(DispatchTime.now().uptimeNanoseconds - sent) / 1000)
            return nil
        }
        var logger = Logger(label: "sluice.bench")
        logger.logLevel = .warning
        var configuration = Worker.Configuration(queues: [queue], concurrency: concurrency)
        configuration.middleware = []
        configuration.publishStartedEvents = startedEvents
        let worker = Worker(broker: broker, registry: registry, configuration: configuration, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [worker], logger: logger))
        let e2eStart = ContinuousClock.now
        let running = Task { try await group.run() }
        // Finished when the worker has settled every task (acked after its event was confirmed).
        while worker.stats.processed < count { try await Task.sleep(for: .milliseconds(5)) }
        let e2eSeconds = seconds(since: e2eStart)

        progress("enqueue-to-start latency: \(latencyTasks) tasks at \(offeredRate)/s...")
        let interval = Duration.nanoseconds(1_000_000_000 / Int64(max(1, offeredRate)))
        let latencyStart = ContinuousClock.now
        for i in 0..<latencyTasks {
            try await Task.sleep(until: latencyStart + interval * i, clock: .continuous)
            let sent = DispatchTime.now().uptimeNanoseconds
            try await client.enqueue(name: "bench.latency", json: Array(try JSONEncoder().encode(LatencyArguments(sent: sent))),
                                     options: .init(queue: queue))
        }
        while done.latencyCount < latencyTasks { try await Task.sleep(for: .milliseconds(5)) }
        await group.triggerGracefulShutdown()
        try await running.value
        // The bench prefix's queues and exchanges stay small and empty; remove the work queues.
        let admin = try await broker.connection.openChannel()
        try await admin.queueDelete(topology.workQueue(queue))
        try await admin.queueDelete(topology.deadQueue(queue))
        for (q, _) in topology.delayQueues { try await admin.queueDelete(q.name) }
        for e in topology.exchanges { try await admin.exchangeDelete(e.name) }
        await broker.close()
        return Result(rawConfirmedPublishesPerSecond: raw.confirmedPublishesPerSecond,
                      enqueuePerSecond: Double(count) / enqueueSeconds, endToEndPerSecond: Double(count) / e2eSeconds,
                      startLatencies: done.latencies.sorted(), offeredRate: offeredRate)
    }

    struct LatencyArguments: Codable { var sent: UInt64 }

    final class Completion: Sendable {
        let target: Int
        private let samples = Mutex<[Int]>([])
        init(target: Int) { self.target = target }
        func recordLatency(_ micros: Int) { samples.withLock { $0.append(micros) } }
        var latencyCount: Int { samples.withLock { $0.count } }
        var latencies: [Int] { samples.withLock { $0 } }
    }
}
