import Foundation
public import SluiceAMQP
import SluiceClient
import SluiceCore
import SluiceRabbitMQ
import SluiceWire
import Synchronization

/// What strict order per key costs: worker processes (`sluice worker
/// --ordered`, started by the caller) drain a backlog of tasks with order
/// keys, then one of plain tasks, on one prefix, each enqueued once the
/// workers have settled (heard each other, shared the partitions out);
/// each drain is timed from its first task finished to its last.
public struct OrderedBenchmark: Sendable {
    public struct Result: Sendable {
        public var tasks: Int
        public var keys: Int
        public var workers: Int
        /// Tasks per second with order keys, and without.
        public var ordered: Double
        public var plain: Double
        /// Tasks that did not run in their key's order (must be 0).
        public var outOfOrder: Int
        /// How many of the ordered tasks each worker ran, most first.
        public var orderedPerWorker: [Int]
        /// Whether the busiest worker was killed halfway through the ordered drain.
        public var killed: Bool
        public var ratio: Double { plain > 0 ? ordered / plain : 0 }
    }

    public var url: AMQPURL
    public var tasks: Int
    public var keys: Int
    public var workers: Int
    /// Seconds between the workers' start and the enqueue.
    public var settle: Int
    /// SIGKILL the worker that ran the most ordered tasks once half are done.
    public var killMidway: Bool

    public init(url: AMQPURL, tasks: Int = 20_000, keys: Int = 100, workers: Int = 4, settle: Int = 8, killMidway: Bool = false) {
        self.settle = settle
        self.killMidway = killMidway
        self.url = url
        self.tasks = tasks
        self.keys = keys
        self.workers = workers
    }

    struct Step: Codable { var k: Int; var n: Int }

    /// `startWorker(prefix, queue)` starts one `sluice worker --ordered`
    /// process and returns a way to stop it.
    public func run(startWorker: @Sendable (String, String) throws -> BenchWorkerProcess,
                    progress: @Sendable (String) -> Void = { _ in }) async throws -> Result {
        let topology = try Topology(prefix: "sluice-ordered-\(UInt32.random(in: 0...UInt32.max))")
        let queue = "bench"
        let broker = try await RabbitMQBroker.connect(url: url, topology: topology, connectionName: "sluice bench ordered")
        try await broker.prepare(queues: [queue])
        try await broker.prepareOrdered(queues: [queue])
        let finished = Mutex<[(at: ContinuousClock.Instant, result: String?, worker: String?)]>([])
        let events = try await broker.subscribeEvents(bindings: ["\(queue).succeeded"])
        let reader = Task {
            for try await delivery in events {
                let event = try? TaskEvent.decode(delivery.body)
                let now = ContinuousClock.now
                finished.withLock { $0.append((now, event?.result, event?.worker)) }
            }
        }
        let client = TaskClient(broker: broker)
        var rates: [Bool: Double] = [:]
        var outOfOrder = 0
        var perWorker: [String: Int] = [:]
        for ordered in [true, false] {
            progress("starting \(workers) workers; \(settle) s for them to hear each other and share the partitions out")
            var started: [BenchWorkerProcess] = []
            for _ in 0..<workers { started.append(try startWorker(topology.prefix, queue)) }
            try await Task.sleep(for: .seconds(settle))
            progress("enqueueing \(tasks) tasks \(ordered ? "over \(keys) order keys" : "without order keys")")
            finished.withLock { $0.removeAll() }
            var n = 0
            while n < tasks {
                let batch = (n..<min(tasks, n + 500)).map { i in
                    let step = Step(k: i % keys, n: i / keys)
                    return TaskClient.Request(name: "sluice.echo", arguments: Array(try! JSONEncoder().encode(step)),
                                              options: EnqueueOptions(queue: queue, orderKey: ordered ? "key-\(step.k)" : nil))
                }
                for case .failure(let error) in try await client.enqueue(batch: batch) { throw error }
                n += batch.count
            }
            let deadline = ContinuousClock.now + .seconds(600)
            var killed: Int32?
            while finished.withLock({ $0.count }) < tasks, ContinuousClock.now < deadline {
                if ordered, killMidway, killed == nil, finished.withLock({ $0.count }) >= tasks / 2 {
                    var byWorker: [String: Int] = [:]
                    for entry in finished.withLock({ $0 }) { byWorker[entry.worker ?? "", default: 0] += 1 }
                    if let busiest = byWorker.max(by: { $0.value < $1.value })?.key,
                       let victim = started.first(where: { busiest.hasSuffix(":\($0.pid)") }) {
                        progress("half done: killing the busiest worker (pid \(victim.pid))")
                        await victim.kill()
                        killed = victim.pid
                    }
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            for worker in started where worker.pid != killed { await worker.stop() }
            let seen = finished.withLock { $0 }
            guard seen.count >= tasks, let first = seen.first?.at, let last = seen.last?.at else {
                throw SluiceError(.timedOut, "\(seen.count) of \(tasks) tasks finished within 600 s")
            }
            rates[ordered] = Double(tasks) / max(0.001, (last - first).timeInterval)
            if ordered {
                var next: [Int: Int] = [:]
                for entry in seen { perWorker[entry.worker ?? "?", default: 0] += 1 }
                for (_, result, _) in seen {
                    guard let step = result.flatMap({ try? JSONDecoder().decode(Step.self, from: Data($0.utf8)) }) else { continue }
                    let expected = next[step.k, default: 0]
                    if step.n == expected { next[step.k] = expected + 1 } else if step.n != expected - 1 { outOfOrder += 1 }
                }
            }
        }
        reader.cancel()
        try? await events.cancel()
        await broker.removeBenchTopology(
            queues: (0..<Topology.orderPartitionCount).map { topology.orderPartitionQueue(queue, $0) } + [topology.workQueue(queue), topology.deadQueue(queue)],
            exchanges: [topology.orderedExchange])
        await broker.close()
        return Result(tasks: tasks, keys: keys, workers: workers, ordered: rates[true] ?? 0, plain: rates[false] ?? 0, outOfOrder: outOfOrder,
                      orderedPerWorker: perWorker.values.sorted(by: >), killed: killMidway)
    }
}
