import Foundation
import Logging
import ServiceLifecycle
public import SluiceAMQP
import SluiceClient
import SluiceCoordinator
import SluiceCore
import SluiceRabbitMQ
import SluiceWire
import SluiceWorker

/// What tracking costs, through Sluice's own producer, a worker and a
/// coordinator's task tracker (SQLite) in this process: the same tasks
/// enqueued and drained untracked and tracked, alternating, and how fast the
/// tracker keeps up with the tracked ones' events.
public struct TrackingBenchmark: Sendable {
    public struct Round: Sendable {
        /// Confirmed enqueues per second.
        public var plainEnqueue: Double
        public var trackedEnqueue: Double
        /// Tasks per second a worker settles.
        public var plainDrain: Double
        public var trackedDrain: Double
        /// Tracked tasks per second from the worker's start until the store
        /// holds all of their events (queued, started, succeeded).
        public var recorded: Double
    }

    public struct Result: Sendable {
        public var tasks: Int
        public var concurrency: Int
        public var rounds: [Round]
        public var enqueueRatio: Double { median(rounds.map { $0.trackedEnqueue / $0.plainEnqueue }) }
        public var drainRatio: Double { median(rounds.map { $0.trackedDrain / $0.plainDrain }) }
        public var recorded: Double { median(rounds.map(\.recorded)) }
        public var record: Bool
    }

    public var url: AMQPURL
    public var tasks: Int
    public var concurrency: Int
    public var rounds: Int
    /// Whether the tracker runs (off: tracked tasks' events wait in its
    /// queue, which shows the producer's and the worker's own cost alone).
    public var record: Bool

    public init(url: AMQPURL, tasks: Int = 20_000, concurrency: Int = 100, rounds: Int = 3, record: Bool = true) {
        self.record = record
        self.url = url
        self.tasks = tasks
        self.concurrency = concurrency
        self.rounds = rounds
    }

    public func run(progress: @Sendable (String) -> Void = { _ in }) async throws -> Result {
        let topology = try Topology(prefix: "sluice-bench-track-\(UInt32.random(in: 0...UInt32.max))")
        let broker = try await RabbitMQBroker.connect(url: url, topology: topology, connectionName: "sluice bench tracking")
        let client = TaskClient(broker: broker)
        var logger = Logger(label: "sluice.bench")
        logger.logLevel = .warning
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-bench-track-\(UUID().uuidString).sqlite").path
        let store = try await SQLiteWorkflowStore.open(path: path, logger: logger)
        let tracker = TaskTracker(broker: broker, store: store, configuration: .init(prefetch: 1000), logger: logger)
        let trackerGroup = ServiceGroup(configuration: .init(services: [tracker], logger: logger))
        let record = self.record
        let trackerRunning = Task { if record { try await trackerGroup.run() } }
        try await broker.prepareTrackingQueue()
        var registry = HandlerRegistry()
        registry.register("bench.noop") { _ in nil }

        var queues: [String] = []
        var results: [Round] = []
        for round in 1...max(1, rounds) {
            var r = Round(plainEnqueue: 0, trackedEnqueue: 0, plainDrain: 0, trackedDrain: 0, recorded: 0)
            for track in (round % 2 == 1 ? [false, true] : [true, false]) {
                let queue = "track-\(round)-\(track ? "on" : "off")"
                queues.append(queue)
                try await broker.prepare(queues: [queue])
                progress("round \(round)/\(rounds): \(tasks) \(track ? "tracked" : "untracked") tasks...")
                // Before the enqueue: the tracker records `queued` events as they come.
                let before = tracker.recordedEvents
                let start = ContinuousClock.now
                try await pipelined(count: tasks, inFlight: 1024) { n in
                    let results = try await client.enqueue(batch: Array(
                        repeating: TaskClient.Request(name: "bench.noop", arguments: Array("{}".utf8), options: .init(queue: queue, track: track)),
                        count: n))
                    for r in results { _ = try r.get() }
                }
                let enqueueRate = Double(tasks) / seconds(since: start)
                let worker = Worker(broker: broker, registry: registry,
                                    configuration: Worker.Configuration(queues: [queue], concurrency: concurrency), logger: logger)
                let group = ServiceGroup(configuration: .init(services: [worker], logger: logger))
                let running = Task { try await group.run() }
                let drainStart = ContinuousClock.now
                let drain = try await drainRate(of: worker, count: tasks)
                if track && record {
                    // queued and succeeded per task, and started for those that ran
                    // longer than a moment: done when its queue is empty and it applied all.
                    let deadline = ContinuousClock.now + .seconds(300)
                    var last = -1
                    while true {
                        let now = tracker.recordedEvents - before
                        if now >= 2 * tasks, now == last, try await broker.queueState(topology.trackingQueue).messageCount == 0 { break }
                        guard ContinuousClock.now < deadline else {
                            throw SluiceError(.timedOut, "the tracker recorded \(now) events of \(tasks) tasks in 5 minutes")
                        }
                        last = now
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    r.recorded = Double(tasks) / seconds(since: drainStart)
                }
                await group.triggerGracefulShutdown()
                try await running.value
                if track {
                    r.trackedEnqueue = enqueueRate
                    r.trackedDrain = drain
                } else {
                    r.plainEnqueue = enqueueRate
                    r.plainDrain = drain
                }
            }
            results.append(r)
        }

        if record { await trackerGroup.triggerGracefulShutdown() }
        try await trackerRunning.value
        try await store.close()
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        // Remove the bench prefix's queues and exchanges.
        await broker.removeBenchTopology(queues: queues.flatMap { [topology.workQueue($0), topology.deadQueue($0)] } + [topology.trackingQueue])
        await broker.close()
        return Result(tasks: tasks, concurrency: concurrency, rounds: results, record: record)
    }
}
