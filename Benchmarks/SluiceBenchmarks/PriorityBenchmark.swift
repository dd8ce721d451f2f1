import Foundation
import Logging
import ServiceLifecycle
public import SluiceAMQP
import SluiceClient
import SluiceCore
import SluiceRabbitMQ
import SluiceWire
import SluiceWorker
import Synchronization

/// Priority levels under a backlog, through Sluice's own producer and a
/// worker in this process: how soon high tasks enqueued behind a backlog of
/// low ones start, what share of the starts low keeps meanwhile, and what
/// consuming three levels costs a queue whose work is all at one level.
public struct PriorityBenchmark: Sendable {
    public struct Result: Sendable {
        public var backlog: Int
        public var highs: Int
        public var concurrency: Int
        /// Each high task's enqueue-to-start time, milliseconds, sorted.
        public var highStartMilliseconds: [Double]
        /// Starts from the high tasks' enqueue to the last one's start.
        public var lowStartsMeanwhile: Int
        public var highStartsMeanwhile: Int
        /// Low's share of those starts, and the share its weight promises
        /// when high and low both wait (low / (high + low)).
        public var lowShare: Double { Double(lowStartsMeanwhile) / Double(max(1, lowStartsMeanwhile + highStartsMeanwhile)) }
        public var lowWeightShare: Double
        /// Per round: tasks/s of a worker without priorities, then of one with
        /// them, on the same all-normal work.
        public var singleLevel: [(plain: Double, levels: Double)]

        public func highStart(percentile p: Double) -> Double {
            guard !highStartMilliseconds.isEmpty else { return 0 }
            return highStartMilliseconds[min(highStartMilliseconds.count - 1, Int((Double(highStartMilliseconds.count) * p / 100).rounded(.up)) - 1)]
        }
        /// Median of levels ÷ plain over the rounds.
        public var singleLevelRatio: Double { median(singleLevel.map { $0.levels / $0.plain }) }
    }

    public var url: AMQPURL
    public var backlog: Int
    public var highs: Int
    public var concurrency: Int
    /// Tasks per single-level throughput measurement.
    public var tasks: Int
    public var rounds: Int
    /// How long each task of the backlog phase takes (0: no work).
    public var taskMilliseconds: Int

    public init(url: AMQPURL, backlog: Int = 50_000, highs: Int = 500, concurrency: Int = 100, tasks: Int = 20_000, rounds: Int = 2,
                taskMilliseconds: Int = 0) {
        self.taskMilliseconds = taskMilliseconds
        self.url = url
        self.backlog = backlog
        self.highs = highs
        self.concurrency = concurrency
        self.tasks = tasks
        self.rounds = rounds
    }

    struct Arguments: Codable { var high: Bool; var sent: UInt64 }

    /// What the handler saw: start counts by level and the high tasks' waits.
    final class Starts: Sendable {
        private struct State {
            var lows = 0, highs = 0
            var waits: [Double] = []
            var lowsAtLastHigh = 0
        }
        private let state = Mutex(State())
        func record(_ arguments: Arguments) {
            let now = DispatchTime.now().uptimeNanoseconds
            state.withLock { s in
                if arguments.high {
                    s.highs += 1
                    s.waits.append(Double(now &- arguments.sent) / 1e6)
                    s.lowsAtLastHigh = s.lows
                } else {
                    s.lows += 1
                }
            }
        }
        var lows: Int { state.withLock { $0.lows } }
        var highs: Int { state.withLock { $0.highs } }
        var snapshot: (lows: Int, highs: Int, waits: [Double], lowsAtLastHigh: Int) {
            state.withLock { ($0.lows, $0.highs, $0.waits, $0.lowsAtLastHigh) }
        }
    }

    public func run(progress: @Sendable (String) -> Void = { _ in }) async throws -> Result {
        let topology = try Topology(prefix: "sluice-bench-prio-\(UInt32.random(in: 0...UInt32.max))")
        let broker = try await RabbitMQBroker.connect(url: url, topology: topology, connectionName: "sluice bench priorities")
        let client = TaskClient(broker: broker)
        var logger = Logger(label: "sluice.bench")
        logger.logLevel = .warning
        let starts = Starts()
        var registry = HandlerRegistry()
        let taskMilliseconds = self.taskMilliseconds
        registry.register("bench.level") { context in
            starts.record(try context.decode(Arguments.self))
            if taskMilliseconds > 0 { try await Task.sleep(for: .milliseconds(taskMilliseconds)) }
            return nil
        }
        registry.register("bench.noop") { _ in nil }

        func start(_ queue: String, priorities: Bool) -> (Worker, ServiceGroup, Task<Void, any Error>) {
            var configuration = Worker.Configuration(queues: [queue], concurrency: concurrency)
            if priorities { configuration.priorities = .standard }
            // Both with the prefetch priorities use, so that the levels are what differs.
            configuration.prefetch = 2 * concurrency
            let worker = Worker(broker: broker, registry: registry, configuration: configuration, logger: logger)
            let group = ServiceGroup(configuration: .init(services: [worker], logger: logger))
            return (worker, group, Task { try await group.run() })
        }
        func enqueue(_ count: Int, name: String, queue: String, priority: TaskPriority, high: Bool) async throws {
            try await pipelined(count: count, inFlight: 1024) { n in
                let sent = DispatchTime.now().uptimeNanoseconds
                let arguments = Array(try JSONEncoder().encode(Arguments(high: high, sent: sent)))
                let results = try await client.enqueue(batch: Array(
                    repeating: TaskClient.Request(name: name, arguments: arguments, options: .init(queue: queue, priority: priority)), count: n))
                for r in results { _ = try r.get() }
            }
        }

        // 1. High tasks behind a low backlog.
        let queue = "levels"
        progress("enqueueing a backlog of \(backlog) low tasks...")
        try await enqueue(backlog, name: "bench.level", queue: queue, priority: .low, high: false)
        let (_, group, running) = start(queue, priorities: true)
        // Into the backlog first, so that the high tasks meet a busy worker.
        let warm = min(backlog / 5, 5 * concurrency)
        while starts.lows < warm { try await Task.sleep(for: .milliseconds(2)) }
        progress("worker draining the backlog; enqueueing \(highs) high tasks...")
        let lowsBefore = starts.lows
        try await enqueue(highs, name: "bench.level", queue: queue, priority: .high, high: true)
        while starts.highs < highs { try await Task.sleep(for: .milliseconds(2)) }
        let seen = starts.snapshot
        await group.triggerGracefulShutdown()
        try await running.value
        let weights = PriorityWeights.standard

        // 2. Single-level throughput with and without priorities, alternating.
        var singleLevel: [(plain: Double, levels: Double)] = []
        for round in 1...max(1, rounds) {
            var plain = 0.0, levels = 0.0
            for priorities in (round % 2 == 1 ? [false, true] : [true, false]) {
                let flat = "flat-\(round)-\(priorities ? "levels" : "plain")"
                progress("round \(round)/\(rounds): \(tasks) normal tasks, a worker \(priorities ? "with" : "without") priorities...")
                try await broker.prepare(queues: [flat])
                try await enqueue(tasks, name: "bench.noop", queue: flat, priority: .normal, high: false)
                let (worker, group, running) = start(flat, priorities: priorities)
                let rate = try await drainRate(of: worker, count: tasks)
                await group.triggerGracefulShutdown()
                try await running.value
                if priorities { levels = rate } else { plain = rate }
            }
            singleLevel.append((plain, levels))
        }

        // Remove the bench prefix's queues and exchanges.
        var names = TaskPriority.highestFirst.map { topology.workQueue(Topology.levelName(queue, $0)) } + [topology.deadQueue(queue)]
        for round in 1...max(1, rounds) {
            for kind in ["plain", "levels"] {
                let flat = "flat-\(round)-\(kind)"
                names += TaskPriority.highestFirst.map { topology.workQueue(Topology.levelName(flat, $0)) } + [topology.deadQueue(flat)]
            }
        }
        await broker.removeBenchTopology(queues: names)
        await broker.close()
        return Result(backlog: backlog, highs: highs, concurrency: concurrency, highStartMilliseconds: seen.waits.sorted(),
                      lowStartsMeanwhile: seen.lowsAtLastHigh - lowsBefore, highStartsMeanwhile: seen.highs,
                      lowWeightShare: Double(weights.low) / Double(weights.low + weights.high), singleLevel: singleLevel)
    }
}
