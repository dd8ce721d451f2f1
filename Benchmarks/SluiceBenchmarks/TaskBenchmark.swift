import Foundation
public import Histogram
import Logging
import ServiceLifecycle
public import SluiceAMQP
import SluiceClient
import SluiceCore
import SluiceRabbitMQ
import SluiceWire
import SluiceWorker
import Synchronization

/// Task throughput and latency through Sluice's own producer and worker,
/// beside the raw AMQP ceiling measured in the same run.
///
/// The broker's speed drifts between runs (and within one: quorum-queue
/// segment writes, garbage collection), so the run takes several rounds, each
/// measuring the raw ceiling and the task rates back to back, alternating
/// which goes first, and reports each round and the medians.
public struct TaskBenchmark: Sendable {
    public struct Round: Sendable {
        public var rawConfirmedPublishesPerSecond: Double
        /// The raw ceiling of the other side: consume and ack, prefetch 1000.
        public var rawConsumeAckPerSecond: Double
        public var enqueuePerSecond: Double
        public var endToEndPerSecond: Double
        /// With ``TaskBenchmark/taskMessagesRaw``: the enqueue's own messages
        /// (tasks exchange, mandatory, its headers) published raw on one channel.
        public var rawTaskMessagesPerSecond: Double?
        /// With ``TaskBenchmark/producerVariants``: confirmed enqueue
        /// through a `TaskClient` on a producer of that shape, tasks/s.
        public var enqueueByProducer: [ProducerShape: Double] = [:]
        public var enqueueRatio: Double { enqueuePerSecond / rawConfirmedPublishesPerSecond }
        /// Enqueue against the raw publish of the very same messages.
        public var enqueueTaskMessagesRatio: Double? { rawTaskMessagesPerSecond.map { enqueuePerSecond / $0 } }
        public var endToEndRatio: Double { endToEndPerSecond / rawConfirmedPublishesPerSecond }
        public var endToEndConsumeRatio: Double { endToEndPerSecond / rawConsumeAckPerSecond }
    }

    /// Enqueue-to-start latency at one offered rate.
    public struct Latency: Sendable {
        public var rate: Int
        /// Microseconds.
        public var histogram: Histogram<UInt64>
        /// The same path without Sluice, measured just before at the same
        /// rate: persistent messages through a quorum queue, consumed and
        /// acked (``RawAMQPBenchmark/latency(count:rate:queueType:prefetch:)``);
        /// microseconds, sorted.
        public var rawQuorum: [Int]
        public func percentile(_ p: Double) -> Int { Int(histogram.valueAtPercentile(p)) }
        public var max: Int { Int(histogram.max) }
        /// The raw quorum-queue latency at a percentile (0-100), microseconds.
        public func rawQuorum(percentile p: Double) -> Int { rawQuorum.isEmpty ? 0 : SluiceBenchmarks.percentile(rawQuorum, p / 100) }
    }

    public struct Result: Sendable {
        public var rounds: [Round]
        /// Enqueue-to-start latency at each offered rate.
        public var latencies: [Latency]
        /// SluiceAMQP's own publish-to-consume round trip on the same broker,
        /// measured just before the latency runs: microseconds, sorted.
        public var rawRoundTrip: [Int]

        public var medianRaw: Double { median(rounds.map(\.rawConfirmedPublishesPerSecond)) }
        public var medianEnqueue: Double { median(rounds.map(\.enqueuePerSecond)) }
        public var medianEndToEnd: Double { median(rounds.map(\.endToEndPerSecond)) }
        public var medianEnqueueRatio: Double { median(rounds.map(\.enqueueRatio)) }
        public var medianEndToEndRatio: Double { median(rounds.map(\.endToEndRatio)) }
        public var medianRawConsumeAck: Double { median(rounds.map(\.rawConsumeAckPerSecond)) }
        public var medianEndToEndConsumeRatio: Double { median(rounds.map(\.endToEndConsumeRatio)) }
        /// The raw round trip at a percentile (0-100), microseconds.
        public func rawRoundTrip(percentile p: Double) -> Int { rawRoundTrip.isEmpty ? 0 : SluiceBenchmarks.percentile(rawRoundTrip, p / 100) }
    }

    public var url: AMQPURL
    public var count: Int
    public var concurrency: Int
    public var rounds: Int
    public var latencyTasks: Int
    /// Offered rates of the latency runs, tasks/s (one run each).
    public var offeredRates: [Int]
    /// Whether the worker publishes `started` events (one more publish per task).
    public var startedEvents: Bool
    /// Keep the worker's default middleware (logging, metrics, tracing)
    /// instead of none.
    public var defaultMiddleware = false
    /// Publish every outcome event even though nobody listens (as with a
    /// coordinator or monitor bound), instead of holding unheard ones back.
    public var eventsAlways = false
    /// Bind a listener to the tasks' `succeeded` events during the end-to-end
    /// runs (as `sluice top` or a result waiter does): every event is
    /// published, routed to its queue and read.
    public var listener = false
    /// Bind the listener to the packs of the tasks' `succeeded` events
    /// (`~pack.succeeded.<queue>.~`) instead of to single events: the worker
    /// then sends them in packs, as it does for any listener bound so.
    public var packListener = false
    /// Also publish the enqueue's own messages raw (SluiceAMQP, one channel,
    /// no TaskClient) in each round: separates what the message shape
    /// costs the broker from what the client costs.
    public var taskMessagesRaw = false
    /// Also measure confirmed enqueue, in each round, through producers of
    /// these shapes (each on connections and a queue of its own), beside the
    /// bench's own producer (``producer``).
    public var producerVariants: [ProducerShape] = []
    /// How the bench's own producer connects: as `sluice enqueue --count`
    /// does, a second connection for publishing, two channels on each.
    public var producer = ProducerShape(connections: 2, channels: 2)

    public init(url: AMQPURL, count: Int, concurrency: Int, rounds: Int = 3, latencyTasks: Int = 2000, offeredRates: [Int] = [200, 5000],
                startedEvents: Bool = false) {
        self.url = url
        self.count = count
        self.concurrency = concurrency
        self.rounds = max(0, rounds)
        self.latencyTasks = latencyTasks
        self.offeredRates = offeredRates
        self.startedEvents = startedEvents
    }

    public func run(progress: @Sendable (String) -> Void = { _ in }) async throws -> Result {
        let topology = try Topology(prefix: "sluice-bench-\(UInt32.random(in: 0...UInt32.max))")
        let broker = try await RabbitMQBroker.connect(url: url, topology: topology, connectionName: "sluice bench tasks",
                                                      publisherChannels: producer.channels, publishingConnections: producer.connections - 1)
        return try await closing(broker) { broker in
            // The worker on a connection of its own, as `sluice worker` connects.
            let workerBroker = try await RabbitMQBroker.connect(url: url, topology: topology, connectionName: "sluice bench tasks worker")
            return try await closing(workerBroker) { workerBroker in
                try await measure(topology: topology, broker: broker, workerBroker: workerBroker, progress: progress)
            }
        }
    }

    private func measure(topology: Topology, broker: RabbitMQBroker, workerBroker: RabbitMQBroker,
                         progress: @Sendable (String) -> Void) async throws -> Result {
        let client = TaskClient(broker: broker)
        let queue = "bench"
        try await broker.prepare(queues: [queue])
        let latencies = LatencyRecorder()
        var registry = HandlerRegistry()
        registry.register("bench.noop") { _ in nil }
        registry.register("bench.latency") { context in
            // Read by hand, as the raw run reads its 8 bytes: a JSON decoder's
            // time is the handler's, not the path's being measured.
            let sent = LatencyArguments.sent(in: context.arguments)
            latencies.record(microseconds: (DispatchTime.now().uptimeNanoseconds - sent) / 1000)
            return nil
        }
        var logger = Logger(label: "sluice.bench")
        logger.logLevel = .warning
        var configuration = Worker.Configuration(queues: [queue], concurrency: concurrency)
        if !defaultMiddleware { configuration.middleware = [] }
        configuration.publishStartedEvents = startedEvents
        if eventsAlways { configuration.unheardEventHold = .zero }
        let workerConfiguration = configuration

        func startWorker(queues: [String]? = nil) -> (Worker, ServiceGroup, Task<Void, any Error>) {
            var configuration = workerConfiguration
            if let queues { configuration.queues = queues }
            let worker = Worker(broker: workerBroker, registry: registry, configuration: configuration, logger: logger)
            let group = ServiceGroup(configuration: .init(services: [worker], logger: logger))
            return (worker, group, Task { try await group.run() })
        }

        let arguments = Array(#"{"n":0}"#.utf8)
        var results: [Round] = []
        for round in stride(from: 1, through: rounds, by: 1) {
            let label = "round \(round)/\(rounds)"
            func measureRaw() async throws -> RawAMQPBenchmark.Result {
                progress("\(label): raw ceiling (quorum, \(count) × 100 B, confirmed publish, then consume+ack)...")
                return try await RawAMQPBenchmark(url: url, count: count).run(queueType: "quorum", consume: true)
            }
            /// Confirmed enqueues of `count` no-op tasks into `queue` through `client`, per second.
            func enqueueRate(_ client: TaskClient, queue: String) async throws -> Double {
                let start = ContinuousClock.now
                try await pipelined(count: count, inFlight: 1024) { n in
                    let results = try await client.enqueue(batch: Array(
                        repeating: TaskClient.Request(name: "bench.noop", arguments: arguments, options: .init(queue: queue)), count: n))
                    for r in results { _ = try r.get() }
                }
                return Double(count) / seconds(since: start)
            }
            func measureEnqueue() async throws -> Double {
                progress("\(label): confirmed enqueue of \(count) tasks...")
                return try await enqueueRate(client, queue: queue)
            }
            func measureTaskMessagesRaw() async throws -> Double {
                progress("\(label): raw publish of \(count) task messages (tasks exchange, mandatory, headers; one channel)...")
                let shaped = try Topology(prefix: topology.prefix + "-raw")
                let shapedBroker = try await RabbitMQBroker.connect(url: url, topology: shaped, connectionName: "sluice bench raw tasks",
                                                                    publisherChannels: 1)
                return try await closing(shapedBroker) { shapedBroker in
                    try await shapedBroker.prepare(queues: [queue])
                    let message = shaped.message(for: TaskEnvelope(name: "bench.noop", queue: queue, arguments: arguments))
                    let channel = try await shapedBroker.connection.openChannel(confirms: true)
                    let start = ContinuousClock.now
                    try await pipelined(count: count, inFlight: 1024) { n in
                        for result in try await channel.publish(batch: Array(repeating: message, count: n)) { try result.get() }
                    }
                    let rate = Double(count) / seconds(since: start)
                    for name in [shaped.workQueue(queue), shaped.deadQueue(queue)] { _ = try? await channel.queueDelete(name) }
                    return rate
                }
            }
            func measureEnqueueVariants() async throws -> [ProducerShape: Double] {
                var rates: [ProducerShape: Double] = [:]
                for shape in producerVariants {
                    progress("\(label): confirmed enqueue of \(count) tasks, \(shape)...")
                    let variant = try await RabbitMQBroker.connect(url: url, topology: topology, connectionName: "sluice bench tasks \(shape.name)",
                                                                   publisherChannels: shape.channels, publishingConnections: shape.connections - 1)
                    let variantQueue = "bench-producer-\(shape.name)"
                    rates[shape] = try await closing(variant) { variant in
                        try await variant.prepare(queues: [variantQueue])
                        let rate = try await enqueueRate(TaskClient(broker: variant), queue: variantQueue)
                        // Its queues only: the exchanges are the run's.
                        if let admin = try? await variant.connection.openChannel() {
                            for name in [topology.workQueue(variantQueue), topology.deadQueue(variantQueue)] { _ = try? await admin.queueDelete(name) }
                        }
                        return rate
                    }
                }
                return rates
            }
            // Alternate the order so that neither side always runs on a broker
            // still busy with the other's aftermath.
            let raw: RawAMQPBenchmark.Result, enqueue: Double
            var taskMessages: Double?
            var variants: [ProducerShape: Double] = [:]
            if round % 2 == 1 {
                raw = try await measureRaw()
                if taskMessagesRaw { taskMessages = try await measureTaskMessagesRaw() }
                variants = try await measureEnqueueVariants()
                enqueue = try await measureEnqueue()
            } else {
                enqueue = try await measureEnqueue()
                variants = try await measureEnqueueVariants()
                if taskMessagesRaw { taskMessages = try await measureTaskMessagesRaw() }
                raw = try await measureRaw()
            }

            let bound = packListener ? ", a listener bound to packs" : listener ? ", a listener bound" : ""
            progress("\(label): end to end, one worker, concurrency \(concurrency)\(bound)...")
            var listening: (broker: RabbitMQBroker, consumer: BrokerConsumer, reading: Task<Void, any Error>)?
            if listener || packListener {
                let key = packListener ? topology.plainEventPackRoutingKey(queue: queue, kind: .succeeded)
                    : topology.eventRoutingKey(queue: queue, kind: .succeeded)
                // A connection of its own, as a listener in another process has: on the
                // worker's, its deliveries would share the worker's connection thread.
                let listenerBroker = try await RabbitMQBroker.connect(url: url, topology: topology, connectionName: "sluice bench tasks listener")
                let events = try await listenerBroker.subscribeEvents(bindings: [key])
                listening = (listenerBroker, events, Task { for try await _ in events {} })
            }
            let (worker, group, running) = startWorker()
            // The clock starts at the first settled task, so that the worker's
            // start-up (declares, consumer) does not count as throughput; it
            // stops when every task is settled (acked after its event was confirmed).
            let endToEnd = try await drainRate(of: worker, count: count)
            await group.triggerGracefulShutdown()
            try await running.value
            if let listening {
                listening.reading.cancel()
                try? await listening.consumer.cancel()
                await listening.broker.close()
            }
            results.append(Round(rawConfirmedPublishesPerSecond: raw.confirmedPublishesPerSecond, rawConsumeAckPerSecond: raw.consumeAckPerSecond,
                                 enqueuePerSecond: enqueue, endToEndPerSecond: endToEnd, rawTaskMessagesPerSecond: taskMessages,
                                 enqueueByProducer: variants))
        }

        /// `latencyTasks` tasks enqueued into `queue` at `rate`/s, each on its
        /// own task; their enqueue-to-start latencies once all have started.
        func enqueueToStart(client: TaskClient, queue: String, rate: Int) async throws -> Histogram<UInt64> {
            latencies.reset()
            let interval = Duration.nanoseconds(1_000_000_000 / Int64(max(1, rate)))
            let start = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                // Each enqueue on its own task: at high rates one waiting
                // for its confirm must not hold back the next send.
                for i in 0..<latencyTasks {
                    try await Task.sleep(until: start + interval * i, clock: .continuous)
                    group.addTask {
                        let sent = DispatchTime.now().uptimeNanoseconds
                        try await client.enqueue(name: "bench.latency", json: LatencyArguments.json(sent: sent), options: .init(queue: queue))
                    }
                }
                try await group.waitForAll()
            }
            while latencies.count < latencyTasks { try await Task.sleep(for: .milliseconds(5)) }
            return latencies.histogram
        }

        var latencyResults: [Latency] = []
        var rawRoundTrip: [Int] = []
        // A new queue per rate, as the raw run declares a new one for each:
        // like for like. The work queue has just carried the throughput
        // rounds, and runs on it had longer tails (docs/performance.md).
        let latencyQueues = offeredRates.map { "latency-\($0)" }
        if latencyTasks > 0 && !offeredRates.isEmpty {
            progress("raw round trip (SluiceAMQP, publish to consume, \(latencyTasks)×)...")
            rawRoundTrip = try await RawAMQPBenchmark(url: url, count: 0).roundTrips(latencyTasks)
            // Enqueued one at a time through a client connected as a library
            // user's is by default (one connection), not the bulk producer
            // above, whose second connection's thread only adds wake-ups here.
            let latencyBroker = try await RabbitMQBroker.connect(url: url, topology: topology, connectionName: "sluice bench latency")
            latencyResults = try await closing(latencyBroker) { latencyBroker in
                try await latencyBroker.prepare(queues: latencyQueues)
                let client = TaskClient(broker: latencyBroker)
                // A client declares a queue at its first enqueue to it (once):
                // done here, before the clock runs, as the raw run declares its
                // queue before it starts timing.
                for queue in latencyQueues { _ = try await client.enqueue(name: "bench.noop", json: arguments, options: .init(queue: queue)) }
                let (_, group, running) = startWorker(queues: latencyQueues)
                var measured: [Latency] = []
                for (rate, queue) in zip(offeredRates, latencyQueues) {
                    progress("raw latency through a quorum queue: \(latencyTasks) messages at \(rate)/s...")
                    let rawQuorum = try await RawAMQPBenchmark(url: url, count: 0).latency(count: latencyTasks, rate: rate, queueType: "quorum")
                    progress("enqueue-to-start latency: \(latencyTasks) tasks at \(rate)/s...")
                    let histogram = try await enqueueToStart(client: client, queue: queue, rate: rate)
                    measured.append(Latency(rate: rate, histogram: histogram, rawQuorum: rawQuorum))
                }
                await group.triggerGracefulShutdown()
                try await running.value
                return measured
            }
        }

        // The bench prefix's queues and exchanges stay small and empty; remove them.
        await broker.removeBenchTopology(queues: ([queue] + latencyQueues).flatMap { [topology.workQueue($0), topology.deadQueue($0)] })
        return Result(rounds: results, latencies: latencyResults, rawRoundTrip: rawRoundTrip)
    }

    /// A latency task's arguments, `{"sent":N}` (N: the enqueue's uptime in
    /// nanoseconds), written and read without a JSON coder.
    enum LatencyArguments {
        static func json(sent: UInt64) -> [UInt8] { Array(#"{"sent":\#(sent)}"#.utf8) }

        static func sent(in json: [UInt8]) -> UInt64 {
            json.reduce(0) { n, byte in (48...57).contains(byte) ? n &* 10 &+ UInt64(byte - 48) : n }
        }
    }

    final class LatencyRecorder: Sendable {
        // Microseconds, up to a minute at three significant digits.
        private let state = Mutex(Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three))
        func record(microseconds: UInt64) {
            _ = state.withLock { $0.record(min(microseconds, 60_000_000)) }
        }
        var count: Int { Int(state.withLock { $0.totalCount }) }
        var histogram: Histogram<UInt64> { state.withLock { $0 } }
        func reset() { state.withLock { $0.reset() } }
    }
}

/// Tasks per second a worker settles until `count` are done, from its first
/// settled task on, so that its start-up (declares, consumers) does not count.
func drainRate(of worker: Worker, count: Int) async throws -> Double {
    var first = 0
    while first == 0 {
        try await Task.sleep(for: .milliseconds(1))
        first = worker.stats.processed
    }
    let start = ContinuousClock.now
    while worker.stats.processed < count { try await Task.sleep(for: .milliseconds(2)) }
    return Double(count - first) / seconds(since: start)
}

/// The middle value (the mean of the two middle ones for an even count).
public func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    let mid = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/// `body`'s result; `broker` is closed after it, whether it throws or not.
func closing<T>(_ broker: RabbitMQBroker, _ body: (RabbitMQBroker) async throws -> T) async throws -> T {
    do {
        let result = try await body(broker)
        await broker.close()
        return result
    } catch {
        await broker.close()
        throw error
    }
}

/// How a producer publishes: over how many connections, with how many
/// publisher channels on each (``RabbitMQBroker/connect(url:topology:connectionName:confirmWindow:publisherChannels:publishingConnections:)``:
/// `connections` is the broker's own and the publishing ones).
public struct ProducerShape: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var connections: Int
    public var channels: Int

    public init(connections: Int, channels: Int) {
        self.connections = connections
        self.channels = channels
    }

    /// `2x1`: two connections, one channel on each; nil unless both are 1 to 16.
    public init?(_ text: some StringProtocol) {
        let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false)
        guard parts.count == 2, let connections = Int(parts[0]), let channels = Int(parts[1]),
              (1...16).contains(connections), (1...16).contains(channels) else { return nil }
        self.init(connections: connections, channels: channels)
    }

    /// As given on the command line: `2x1`.
    public var name: String { "\(connections)x\(channels)" }

    public var description: String {
        "\(connections) connection\(connections == 1 ? "" : "s") × \(channels) publisher channel\(channels == 1 ? "" : "s")"
    }

    public static func < (a: Self, b: Self) -> Bool { (a.connections, a.channels) < (b.connections, b.channels) }
}
