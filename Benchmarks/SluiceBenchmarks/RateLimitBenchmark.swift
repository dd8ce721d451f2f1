import Foundation
public import SluiceAMQP
import SluiceClient
import SluiceCore
import SluiceRabbitMQ
import SluiceWire
import Synchronization

/// Whether a fleet-wide rate limit holds while the fleet changes: worker
/// processes (`sluice worker --rate-limit`, started by the caller) drain a
/// backlog of one limited task; midway another worker joins and, later,
/// one is killed (SIGKILL). Counts the `succeeded` events per second.
public struct RateLimitBenchmark: Sendable {
    public struct Result: Sendable {
        public var limit: Double
        public var seconds: Int
        /// Tasks finished in the measured window, over its length.
        public var rate: Double
        /// Tasks finished in each second of the window.
        public var perSecond: [Int]
        /// Seconds into the window when a worker joined and when one was killed.
        public var joinedAt: Int
        public var killedAt: Int
        public var warmup: Int

        /// The rate's distance from the limit, as a fraction of it.
        public var deviation: Double { abs(rate - limit) / limit }
    }

    public var url: AMQPURL
    public var limit: Double
    public var backlog: Int
    public var workers: Int
    public var seconds: Int
    /// Seconds from the first task finished to the window's start: the
    /// workers starting one by one (each hears its peers before it takes
    /// tasks) is not what is measured.
    public var warmup: Int

    public init(url: AMQPURL, limit: Double = 200, backlog: Int = 20_000, workers: Int = 4, seconds: Int = 30, warmup: Int = 2) {
        self.warmup = warmup
        self.url = url
        self.limit = limit
        self.backlog = backlog
        self.workers = workers
        self.seconds = seconds
    }

    /// The task every worker is limited on.
    public static let taskName = "sluice.echo"

    /// `startWorker(prefix, queue)` starts one worker process limited to
    /// `limit`/s of ``taskName`` on that prefix and queue.
    public func run(startWorker: @Sendable (String, String) throws -> BenchWorkerProcess,
                    progress: @Sendable (String) -> Void = { _ in }) async throws -> Result {
        let topology = try Topology(prefix: "sluice-rate-\(UInt32.random(in: 0...UInt32.max))")
        let queue = "limited"
        let broker = try await RabbitMQBroker.connect(url: url, topology: topology, connectionName: "sluice bench rate-limit")
        try await broker.prepare(queues: [queue])
        let finished = Mutex<[ContinuousClock.Instant]>([])
        let events = try await broker.subscribeEvents(bindings: ["\(queue).succeeded"])
        let reader = Task {
            for try await delivery in events {
                let now = ContinuousClock.now
                finished.withLock { $0.append(now) }
                try? await delivery.ack()
            }
        }
        progress("enqueueing \(backlog) tasks")
        let client = TaskClient(broker: broker)
        var left = backlog
        while left > 0 {
            let batch = min(500, left)
            let results = try await client.enqueue(batch: (0..<batch).map { _ in
                TaskClient.Request(name: Self.taskName, arguments: Array("{}".utf8), options: EnqueueOptions(queue: queue))
            })
            for case .failure(let error) in results { throw error }
            left -= batch
        }
        var running: [BenchWorkerProcess] = []
        progress("starting \(workers) workers limited to \(limit)/s in all")
        for _ in 0..<workers { running.append(try startWorker(topology.prefix, queue)) }
        // The window opens a warm-up after the first task finished: worker start-up is not measured.
        let opened = ContinuousClock.now + .seconds(60)
        while finished.withLock({ $0.isEmpty }), ContinuousClock.now < opened { try await Task.sleep(for: .milliseconds(20)) }
        guard let first = finished.withLock({ $0.first }) else {
            for worker in running { await worker.kill() }
            throw SluiceError(.timedOut, "no task finished within 60 s of starting the workers")
        }
        let start = first + .seconds(warmup)
        let joinedAt = seconds / 3, killedAt = 2 * seconds / 3
        try await Task.sleep(until: start + .seconds(joinedAt))
        progress("\(joinedAt) s: one more worker joins")
        running.append(try startWorker(topology.prefix, queue))
        try await Task.sleep(until: start + .seconds(killedAt))
        progress("\(killedAt) s: one worker is killed (SIGKILL)")
        await running.removeFirst().kill()
        try await Task.sleep(until: start + .seconds(seconds))
        let window = finished.withLock { $0 }.filter { $0 >= start && $0 < start + .seconds(seconds) }
        var perSecond = Array(repeating: 0, count: seconds)
        for at in window { perSecond[min(seconds - 1, Int((at - start).timeInterval))] += 1 }
        progress("stopping the workers")
        for worker in running { await worker.stop() }
        reader.cancel()
        try? await events.cancel()
        // Remove the bench prefix's queues (and the backlog left in them) and exchanges.
        await broker.removeBenchTopology(queues: [topology.workQueue(queue), topology.deadQueue(queue)])
        await broker.close()
        return Result(limit: limit, seconds: seconds, rate: Double(window.count) / Double(seconds), perSecond: perSecond,
                      joinedAt: joinedAt, killedAt: killedAt, warmup: warmup)
    }
}
