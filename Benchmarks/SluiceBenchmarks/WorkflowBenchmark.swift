import Foundation
import Logging
import ServiceLifecycle
public import SluiceAMQP
public import SluiceCoordinator
import SluiceCore
import SluiceRabbitMQ
import SluiceWire
import SluiceWorker
import SluiceWorkflow

/// Step transitions per second through the coordinator, and the time of one
/// large fan-out and fan-in, on a given store, with an in-process worker
/// running no-op steps on the same broker.
public struct WorkflowBenchmark: Sendable {
    public struct Result: Sendable {
        public var store: String
        /// Step completions applied per second (each one: an event in, a commit, the next step published).
        public var transitionsPerSecond: Double
        public var runs: Int
        public var stepsPerRun: Int
        /// Seconds from start to completion of one map over `mapSize` elements and its join.
        public var mapSeconds: Double
        public var mapSize: Int
        /// Seconds from start to completion of small runs (`stepsPerRun`
        /// steps) started every quarter second while the map ran: p50 and p99
        /// (nil if none finished before the map did).
        public var otherRunsP50: Double?
        public var otherRunsP99: Double?
        /// The most resident memory of this process (coordinator and worker) while the map ran.
        public var peakResidentBytes: Int
        /// Coordinators that shared the store, and its partition count.
        public var coordinators = 1
        public var partitions = 1
    }

    public var url: AMQPURL
    public var runs: Int
    public var stepsPerRun: Int
    public var mapSize: Int
    public var concurrency: Int

    /// A queue of its own for the map's tasks (nil: the same queue as every step).
    public var mapQueue: String?
    /// Whether the coordinators ask for step outcomes in packs (``EventPack``).
    public var eventPacks = true
    /// Run starts in progress at once while the runs of the transitions
    /// measurement are started (each start returns once committed).
    public var startsInFlight = 512

    public init(url: AMQPURL, runs: Int = 500, stepsPerRun: Int = 3, mapSize: Int = 10_000, concurrency: Int = 200, mapQueue: String? = nil) {
        self.url = url
        self.mapQueue = mapQueue
        self.runs = runs
        self.stepsPerRun = stepsPerRun
        self.mapSize = mapSize
        self.concurrency = concurrency
    }

    /// Runs both measurements against a store (`label` names it in the result).
    public func run(store: any WorkflowStore, label: String, progress: @Sendable (String) -> Void = { _ in }) async throws -> Result {
        try await run(stores: [store], partitions: 1, label: label, progress: progress)
    }

    /// Runs both measurements with one in-process coordinator per store
    /// (each its own connection to one database; with more than one, the
    /// database must be new, so that it takes `partitions`, and they share them).
    public func run(stores: [any WorkflowStore], partitions: Int, label: String,
                    progress: @Sendable (String) -> Void = { _ in }) async throws -> Result {
        let topology = try Topology(prefix: "sluice-wfbench-\(UInt32.random(in: 0...UInt32.max))")
        let broker = try await RabbitMQBroker.connect(url: url, topology: topology, connectionName: "sluice bench workflows")
        var logger = Logger(label: "sluice.bench")
        logger.logLevel = .warning
        let limits = WorkflowLimits(maxMapElements: max(WorkflowLimits.standard.maxMapElements, mapSize))
        let engines = stores.map { RunEngine(store: $0, limits: limits, logger: logger) }
        let engine = engines[0]
        let partitionCount = try await engine.store.partitionCount(proposed: partitions)
        if engines.count > 1 && partitionCount == 1 {
            throw BenchmarkError("this database was created with one partition: give several coordinators a new one")
        }
        let queue = "bench"
        // Each coordinator on a connection of its own, as separate processes would be.
        var brokers: [RabbitMQBroker] = [broker]
        for i in 1..<engines.count {
            brokers.append(try await RabbitMQBroker.connect(url: url, topology: topology, connectionName: "sluice bench workflows \(i)"))
        }
        let coordinators = zip(engines, brokers).map { engine, broker in
            var configuration = Coordinator.Configuration(leaseTTL: .seconds(30), defaultQueue: queue, prefetch: 500)
            configuration.partitions = partitions
            configuration.eventPacks = eventPacks
            return Coordinator(broker: broker, engine: engine, configuration: configuration, logger: logger)
        }
        var registry = HandlerRegistry()
        registry.register("bench.step") { _ in Array("{}".utf8) }
        let queues = [queue] + (mapQueue.map { [$0] } ?? [])
        var configuration = Worker.Configuration(queues: queues, concurrency: concurrency)
        configuration.middleware = []
        let worker = Worker(broker: broker, registry: registry, configuration: configuration, logger: logger)
        let group = ServiceGroup(configuration: .init(services: coordinators.map { $0 as any Service } + [worker], logger: logger))
        let running = Task { try await group.run() }
        if partitionCount > 1 {
            progress("\(label): \(coordinators.count) coordinator\(coordinators.count == 1 ? "" : "s") sharing \(partitionCount) partitions...")
            try await waitUntilShared(coordinators, partitionCount)
        }

        try await engine.register(WorkflowDefinition(name: "bench-seq") {
            for i in 0..<stepsPerRun {
                WorkflowStep.task("s\(i)", "bench.step", after: i == 0 ? [] : ["s\(i - 1)"])
            }
        })
        try await engine.register(WorkflowDefinition(name: "bench-map") {
            WorkflowStep.map("each", over: "input.items", task: "bench.step", queue: mapQueue, arguments: ["i": "${index}"])
            WorkflowStep.join("all", after: ["each"])
        })

        progress("\(label): \(runs) runs of \(stepsPerRun) steps...")
        let completedBefore = try await counts(engine)
        let start = ContinuousClock.now
        // Started as a service's requests would start them: many at once
        // (the engine commits starts that arrive together in one transaction).
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            var ids: [String] = []
            for i in 0..<runs {
                if i >= startsInFlight, let id = try await group.next() { ids.append(id) }
                // Through each coordinator in turn, as a service behind a load balancer would.
                let through = engines[i % engines.count]
                group.addTask { try await through.start(workflow: "bench-seq", input: [:]).runID }
            }
            for try await id in group { ids.append(id) }
            return ids
        }
        try await waitForCompletion(engine, ids, after: completedBefore)
        let transitionsPerSecond = Double(runs * stepsPerRun) / seconds(since: start)

        progress("\(label): a map over \(mapSize) elements and a join...")
        let mapStart = ContinuousClock.now
        let items = JSONValue.array((0..<mapSize).map { .number(Double($0)) })
        // Only its id kept: a copy of its state here would double its elements in memory.
        let mapRunID = try await engine.start(workflow: "bench-map", input: ["items": items]).runID
        // Meanwhile: how long other, small runs take, and how much memory the process holds.
        let probe = Task { try await probeWhileMapRuns(engine) }
        try await waitForRun(engine, mapRunID)
        let mapSeconds = seconds(since: mapStart)
        probe.cancel()
        let (latencies, peakResident) = try await probe.value
        let sorted = latencies.sorted()
        func percentile(_ p: Double) -> Double? { sorted.isEmpty ? nil : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }

        await group.triggerGracefulShutdown()
        try await running.value
        await broker.removeBenchTopology(queues: queues.flatMap { [topology.workQueue($0), topology.deadQueue($0)] }
            + (0..<partitionCount).map { topology.coordinatorQueue(partition: $0, of: partitionCount) } + [topology.coordinatorDeadQueue])
        for b in brokers { await b.close() }
        return Result(store: label, transitionsPerSecond: transitionsPerSecond, runs: runs, stepsPerRun: stepsPerRun,
                      mapSeconds: mapSeconds, mapSize: mapSize, otherRunsP50: percentile(0.5), otherRunsP99: percentile(0.99),
                      peakResidentBytes: peakResident, coordinators: coordinators.count, partitions: partitionCount)
    }

    /// Waits until every coordinator leads some partitions and together they lead all.
    private func waitUntilShared(_ coordinators: [Coordinator], _ count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            let led = coordinators.map(\.ledPartitions.partitions)
            if led.allSatisfy({ !$0.isEmpty }) && led.flatMap({ $0 }).sorted() == Array(0..<count) { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw BenchmarkError("the coordinators did not come to share the partitions within 120 s")
    }

    /// Starts a small run every quarter second until cancelled, and returns
    /// how long each took to complete, and the process's peak resident memory.
    private func probeWhileMapRuns(_ engine: RunEngine) async throws -> ([Double], Int) {
        var latencies: [Double] = []
        var peak = Self.residentBytes()
        // Cancelled when the map is done: a store call cut short by it ends the probe, not the benchmark.
        do {
            try await probe(engine, &latencies, &peak)
        } catch where Task.isCancelled {}
        return (latencies, peak)
    }

    private func probe(_ engine: RunEngine, _ latencies: inout [Double], _ peak: inout Int) async throws {
        while !Task.isCancelled {
            let started = ContinuousClock.now
            let run = try await engine.start(workflow: "bench-seq", input: [:])
            while !Task.isCancelled {
                peak = max(peak, Self.residentBytes())
                if let status = try await engine.runStatus(run.runID), status.isFinal {
                    latencies.append(seconds(since: started))
                    break
                }
                try? await Task.sleep(for: .milliseconds(5))
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
    }

    /// VmRSS from /proc/self/status (0 where there is none).
    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kb = Int(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kb * 1024
    }

    /// Waits until one run is final (it must complete), reading its status alone.
    private func waitForRun(_ engine: RunEngine, _ id: String) async throws {
        while true {
            if let status = try await engine.runStatus(id), status.isFinal {
                guard status == .completed else {
                    let error = try await engine.run(id)?.error ?? ""
                    throw BenchmarkError("run \(id) ended \(status.rawValue): \(error)")
                }
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Runs by status, as the store counts them.
    private func counts(_ engine: RunEngine) async throws -> [String: Int] {
        try await engine.store.statistics().runsByStatus
    }

    /// Waits until the store counts `ids.count` more completed runs than
    /// `before` (one grouped count per poll: reading each run back would
    /// cost the coordinator more than the runs; a scratch PostgreSQL
    /// database may hold runs of earlier benchmarks).
    private func waitForCompletion(_ engine: RunEngine, _ ids: [String], after before: [String: Int]) async throws {
        while true {
            let now = try await counts(engine)
            let ended = ["failed", "cancelled"].reduce(0) { $0 + (now[$1] ?? 0) - (before[$1] ?? 0) }
            if ended > 0 { throw BenchmarkError("\(ended) runs failed or were cancelled") }
            if (now["completed"] ?? 0) - (before["completed"] ?? 0) >= ids.count { return }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

struct BenchmarkError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
