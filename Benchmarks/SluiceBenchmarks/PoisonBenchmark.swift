import Foundation
public import SluiceAMQP
import SluiceClient
import SluiceCore
import SluiceRabbitMQ
import Synchronization

/// What tasks that crash their worker cost everyone else: ordinary tasks
/// enqueued at a steady rate to a supervised worker (`sluice worker
/// --processes N`, started by the caller), with `sluice.crash` tasks among
/// them. Reports the ordinary tasks' enqueue-to-start wait, how many of
/// them did not succeed, and how long each poison took to be dead-lettered.
public struct PoisonBenchmark: Sendable {
    public struct Result: Sendable {
        public var ordinary: Int
        public var poisons: Int
        /// Ordinary tasks' enqueue-to-start waits, milliseconds, sorted.
        public var waits: [Double]
        /// Ordinary tasks that did not succeed (dead, or no outcome in time).
        public var innocentsLost: Int
        /// Seconds from each poison's enqueue to its dead letter, sorted (nil: never).
        public var poisonSeconds: [Double?]
        public var poisonReasons: [String]

        public func wait(percentile p: Double) -> Double {
            guard !waits.isEmpty else { return 0 }
            return waits[min(waits.count - 1, Int((Double(waits.count) * p / 100).rounded(.up)) - 1)]
        }
    }

    public var url: AMQPURL
    /// Ordinary tasks per second.
    public var rate: Int
    public var seconds: Int
    public var poisons: Int
    /// Seconds each ordinary task sleeps (so that some are running at every crash).
    public var taskSeconds: Double

    public init(url: AMQPURL, rate: Int = 20, seconds: Int = 30, poisons: Int = 5, taskSeconds: Double = 0.2) {
        self.url = url
        self.rate = rate
        self.seconds = seconds
        self.poisons = poisons
        self.taskSeconds = taskSeconds
    }

    /// `startWorker(prefix, queue)` starts the supervised worker and returns
    /// a way to stop it; it runs against the same broker.
    public func run(startWorker: @Sendable (String, String) throws -> @Sendable () async -> Void,
                    progress: @Sendable (String) -> Void = { _ in }) async throws -> Result {
        let topology = try Topology(prefix: "sluice-poison-\(UInt32.random(in: 0...UInt32.max))")
        let queue = "ordinary"
        let broker = try await RabbitMQBroker.connect(url: url, topology: topology, connectionName: "sluice bench poison")
        try await broker.prepare(queues: [queue])
        let outcomes = Mutex<[String: TaskEvent]>([:])
        let events = try await broker.subscribeEvents(bindings: ["\(queue).succeeded", "\(queue).dead"])
        let reader = Task {
            for try await delivery in events {
                if let event = try? TaskEvent.decode(delivery.body) { outcomes.withLock { $0[event.taskID] = event } }
            }
        }
        let stop = try startWorker(topology.prefix, queue)
        let client = TaskClient(broker: broker)
        var ordinary: [String] = []
        var poisonEnqueued: [String: Date] = [:]
        let total = rate * seconds
        let poisonEvery = max(1, total / (poisons + 1))
        progress("\(total) ordinary tasks at \(rate)/s for \(seconds) s, \(poisons) sluice.crash tasks among them")
        let start = ContinuousClock.now
        for i in 0..<total {
            // On schedule, not as fast as possible: the rate is what users offer.
            let due = start + .milliseconds(Int64(i) * 1000 / Int64(rate))
            if due > .now { try await Task.sleep(until: due) }
            ordinary.append(try await client.enqueue(name: "sluice.sleep", json: Array(#"{"seconds":\#(taskSeconds)}"#.utf8),
                                                     options: .init(queue: queue)))
            if i > 0, i % poisonEvery == 0, poisonEnqueued.count < poisons {
                let id = try await client.enqueue(name: "sluice.crash", json: Array("{}".utf8), options: .init(queue: queue))
                poisonEnqueued[id] = Date()
            }
        }
        progress("waiting for every outcome (up to 60 s)")
        let wanted = Set(ordinary).union(poisonEnqueued.keys)
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline, outcomes.withLock({ o in !wanted.allSatisfy { o[$0] != nil } }) {
            try await Task.sleep(for: .milliseconds(200))
        }
        await stop()
        reader.cancel()
        try? await events.cancel()
        // The bench prefix's queues, exchanges and revocation stream, so the node does not keep them.
        await broker.removeBenchTopology(queues: [topology.workQueue(queue), topology.deadQueue(queue)])
        await broker.close()
        let seen = outcomes.withLock { $0 }
        let waits = ordinary.compactMap { seen[$0]?.kind == .succeeded ? seen[$0]?.waitMilliseconds : nil }.sorted()
        let lost = ordinary.filter { seen[$0]?.kind != .succeeded }.count
        let poisonTimes = poisonEnqueued.map { id, at in seen[id].flatMap { $0.kind == .dead ? $0.at.timeIntervalSince(at) : nil } }
        return Result(ordinary: ordinary.count, poisons: poisonEnqueued.count, waits: waits, innocentsLost: lost,
                      poisonSeconds: poisonTimes.sorted { ($0 ?? .infinity) < ($1 ?? .infinity) },
                      poisonReasons: poisonEnqueued.keys.map { seen[$0]?.deadReason?.rawValue ?? "none" }.sorted())
    }
}
