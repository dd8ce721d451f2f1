import Foundation
public import SluiceAMQP
import SluiceClient
import SluiceCore
import SluiceRabbitMQ
import SluiceWire
import Synchronization

/// What a unique key costs a producer: the same number of enqueues, each
/// awaited by one of `callers` concurrent callers (as a service's request
/// handlers would), without a key, with a new key each, and with a key
/// already held (nothing enqueued), alternating the order over the rounds.
public struct UniqueBenchmark: Sendable {
    public struct Round: Sendable {
        /// Enqueues per second.
        public var plain: Double
        public var uniqueNew: Double
        public var uniqueHeld: Double
    }

    public struct Result: Sendable {
        public var tasks: Int
        public var callers: Int
        public var rounds: [Round]
        public var newRatio: Double { median(rounds.map { $0.uniqueNew / $0.plain }) }
        public var heldRatio: Double { median(rounds.map { $0.uniqueHeld / $0.plain }) }
    }

    public var url: AMQPURL
    public var tasks: Int
    public var callers: Int
    public var rounds: Int

    public init(url: AMQPURL, tasks: Int = 5_000, callers: Int = 32, rounds: Int = 3) {
        self.url = url
        self.tasks = tasks
        self.callers = callers
        self.rounds = rounds
    }

    enum Mode: CaseIterable { case plain, uniqueNew, uniqueHeld }

    public func run(progress: @Sendable (String) -> Void = { _ in }) async throws -> Result {
        let topology = try Topology(prefix: "sluice-bench-unique-\(UInt32.random(in: 0...UInt32.max))")
        let broker = try await RabbitMQBroker.connect(url: url, topology: topology, connectionName: "sluice bench unique")
        let client = TaskClient(broker: broker)
        let queue = "unique"
        try await broker.prepare(queues: [queue])
        let window = Duration.seconds(600)
        var results: [Round] = []
        var lockQueues: Set<String> = []
        for round in 1...max(1, rounds) {
            var r = Round(plain: 0, uniqueNew: 0, uniqueHeld: 0)
            let order = round % 2 == 1 ? Mode.allCases : Mode.allCases.reversed()
            for mode in order {
                progress("round \(round)/\(rounds): \(tasks) enqueues, \(mode)...")
                let held = UniqueKey("held-\(round)", for: window)
                if mode == .uniqueHeld {
                    // Taken once beforehand: every timed call finds it held.
                    _ = try await client.enqueueUnique(name: "bench.noop", json: Array("{}".utf8), options: .init(queue: queue, unique: held))
                    lockQueues.insert(topology.uniqueLockQueue(held))
                }
                let next = Counter()
                let start = ContinuousClock.now
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<max(1, callers) {
                        group.addTask {
                            while let i = next.take(below: tasks) {
                                var options = EnqueueOptions(queue: queue)
                                switch mode {
                                case .plain: break
                                case .uniqueNew: options.unique = UniqueKey("new-\(round)-\(i)", for: window)
                                case .uniqueHeld: options.unique = held
                                }
                                let outcome = try await client.enqueueUnique(name: "bench.noop", json: Array("{}".utf8), options: options)
                                if mode == .uniqueHeld && outcome.enqueued { throw SluiceError(.enqueueFailed, "a held key enqueued a task") }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                let rate = Double(tasks) / seconds(since: start)
                switch mode {
                case .plain: r.plain = rate
                case .uniqueNew:
                    r.uniqueNew = rate
                    for i in 0..<tasks { lockQueues.insert(topology.uniqueLockQueue(UniqueKey("new-\(round)-\(i)", for: window))) }
                case .uniqueHeld: r.uniqueHeld = rate
                }
            }
            results.append(r)
        }
        // Remove the bench prefix's queues and exchanges.
        progress("removing the benchmark's queues...")
        await broker.removeBenchTopology(
            queues: lockQueues.flatMap { [$0, topology.uniqueHolderQueue(ofLock: $0)] } + [topology.workQueue(queue), topology.deadQueue(queue)],
            exchanges: [topology.uniqueExchange])
        await broker.close()
        return Result(tasks: tasks, callers: callers, rounds: results)
    }

    /// Hands out 0, 1, 2... to concurrent callers.
    private final class Counter: Sendable {
        private let value = Mutex(0)
        func take(below limit: Int) -> Int? {
            value.withLock { v in
                guard v < limit else { return nil }
                defer { v += 1 }
                return v
            }
        }
    }
}
