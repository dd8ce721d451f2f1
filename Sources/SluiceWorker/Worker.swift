#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
public import Logging
public import Metrics
public import ServiceLifecycle
import SluiceWire
public import SluiceCore
import Synchronization

/// Consumes task queues and runs registered handlers: a ServiceLifecycle
/// `Service`.
///
/// A delivery is acknowledged only after its outcome is safe — the
/// `succeeded` event, the retry copy or the dead-letter copy has itself been
/// confirmed by the broker — so a worker killed at any instant loses nothing.
/// Bad input (undecodable, unknown task, too large, expired, unsupported
/// version) goes to the queue's dead queue with its reason; the worker never
/// crashes on it. On graceful shutdown (SIGTERM/SIGINT through a
/// `ServiceGroup`) it stops consuming, lets running tasks finish for
/// `shutdownGrace`, returns the rest to the queue and returns.
public final class Worker: Service {
    /// Worker settings.
    public struct Configuration: Sendable {
        /// Queues to consume (names without prefix).
        public var queues: [String]
        /// Tasks run at once (and, unless ``prefetch`` says otherwise, each queue's prefetch).
        public var concurrency: Int
        /// Retry policy for tasks that do not carry their own.
        public var retryPolicy: RetryPolicy
        /// Bodies larger than this go to the dead queue (`too_large`).
        public var maxBodyBytes: Int
        /// Results larger than this are cut from the `succeeded` event.
        public var maxResultBytes: Int
        /// Soft time limit per task; nil for none.
        public var timeLimit: Duration?
        /// How long a handler may ignore cancellation before it is reported.
        public var timeLimitGrace: Duration
        /// How long running tasks may finish after shutdown starts.
        public var shutdownGrace: Duration
        /// Publish a `started` event per task (not waited for). Off by default,
        /// as Celery's task events are: each costs the broker a publish, which
        /// cut end-to-end throughput by a third (docs/performance.md), and the
        /// outcome events already carry the wait and the run time.
        public var publishStartedEvents: Bool
        /// How long a plain task's events are not published after one came
        /// back unroutable (nobody listens; see ``EventDemand``), and likewise
        /// their packs (`~pack.<kind>.<queue>.~`). Zero publishes every event,
        /// alone, whether anybody listens or not, and none in packs.
        public var unheardEventHold: Duration = .seconds(5)
        /// Interval of the worker's heartbeat on the events exchange.
        public var heartbeatInterval: Duration
        /// `host:pid`, in events and dead-letter headers.
        public var workerID: String
        /// Middleware around every handler, outermost first.
        public var middleware: [any WorkerMiddleware]
        /// Where the worker's own metrics go (outcomes, in flight, wait);
        /// nil for the process's `MetricsSystem`.
        public var metricsFactory: (any MetricsFactory)?
        /// Signs every outcome event (and dead copy) with the key the
        /// coordinator checks them with; nil sends them unsigned.
        public var eventSigner: EventSigner?
        /// Decides, per decoded task, whether it runs here (nil: always).
        public var admission: (@Sendable (TaskEnvelope) -> Admission)?
        /// Consume the queues' isolation queues (``Topology/isolationQueue(_:)``)
        /// instead of their work queues: the process that runs suspects.
        public var consumesIsolationQueues: Bool
        /// Told when a handler starts and ends: `sluice worker --processes`
        /// uses it to find a child stuck in one task past the hard limit.
        public var taskReporter: (@Sendable (TaskReport) -> Void)?
        /// Take from every priority level of each queue (`<queue>~high`,
        /// `<queue>`, `<queue>~low`), sharing slots by these weights while
        /// several levels have work; nil consumes the queues as named (a name
        /// may itself be one level, `emails~high`).
        public var priorities: PriorityWeights?
        /// Unacknowledged deliveries the broker may send ahead, per consumed
        /// queue (or level); nil: the concurrency, twice it with priorities.
        /// More than the concurrency keeps slots busy across the round trip
        /// between an ack and the next delivery, at the price of holding
        /// tasks another idle worker could have taken.
        public var prefetch: Int?
        /// Read the revocation stream (``SluiceCore/Revocation``) and refuse
        /// the tasks it names. Off, revocations are ignored (and the worker
        /// needs no stream: RabbitMQ before 3.9 has none).
        public var followsRevocations = true
        /// How long the worker waits at start to have read the revocations
        /// before it takes tasks; past it, it starts anyway and says so.
        public var revocationCatchUp: Duration = .seconds(30)
        /// Starts per second per task name or queue, held across every
        /// worker of the prefix with the same limit (``SluiceCore/RateLimit``).
        /// A worker with limits beats at least every second, and takes
        /// tasks only once it has heard its peers.
        public var rateLimits: [RateLimit] = []
        /// Also consume each queue's ordered partitions
        /// (``SluiceCore/Topology/orderedExchange(_:)``), one task at a time
        /// per partition, retrying failed attempts in place: tasks with an
        /// order key run one at a time per key, in enqueue order.
        public var ordered = false

        public init(queues: [String], concurrency: Int = 10, retryPolicy: RetryPolicy = RetryPolicy(),
                    maxBodyBytes: Int = 1 << 20, maxResultBytes: Int = 64 << 10, timeLimit: Duration? = nil,
                    timeLimitGrace: Duration = .seconds(5), shutdownGrace: Duration = .seconds(30),
                    publishStartedEvents: Bool = false, heartbeatInterval: Duration = .seconds(5),
                    workerID: String = Worker.defaultWorkerID, middleware: [any WorkerMiddleware] = [LoggingMiddleware(), MetricsMiddleware(), TracingMiddleware()]) {
            self.queues = queues
            self.concurrency = max(1, concurrency)
            self.retryPolicy = retryPolicy
            self.maxBodyBytes = maxBodyBytes
            self.maxResultBytes = maxResultBytes
            self.timeLimit = timeLimit
            self.timeLimitGrace = timeLimitGrace
            self.shutdownGrace = shutdownGrace
            self.publishStartedEvents = publishStartedEvents
            self.heartbeatInterval = heartbeatInterval
            self.workerID = workerID
            self.middleware = middleware
            self.metricsFactory = nil
            self.taskReporter = nil
            self.eventSigner = nil
            self.admission = nil
            self.consumesIsolationQueues = false
        }
    }

    /// What to do with a decoded task before its handler runs: a supervisor
    /// decides this for tasks suspected of crashing their process.
    public enum Admission: Sendable, Hashable {
        /// Run it here.
        case run
        /// Hand it to the isolation queue (``Topology/isolationQueue(_:)``),
        /// where a process of its own runs such tasks one at a time.
        case isolate
        /// Dead-letter it with this reason and message instead of running it.
        case deadLetter(DeadReason, String)
    }

    /// A handler's start or end, for a supervisor.
    public enum TaskReport: Sendable, Hashable {
        case started(taskID: String)
        case finished(taskID: String)
    }

    /// `hostname:pid`.
    public static var defaultWorkerID: String {
        "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier)"
    }

    /// Counters, readable while the worker runs.
    public struct Stats: Sendable, Hashable {
        public var inFlight = 0
        public var processed = 0
        public var succeeded = 0
        public var retried = 0
        public var dead = 0
        /// Events not published because nobody listened to their key (``EventDemand``).
        public var eventsHeldBack = 0
    }

    public let broker: any Broker
    public let registry: HandlerRegistry
    public let configuration: Configuration
    let logger: Logger
    private let statsBox = Mutex(Stats())
    private let eventDemand: Mutex<EventDemand>
    /// The pack keys of the plain event keys of the queues it consumes,
    /// made once: building one (asked twice per outcome) allocated a string.
    private let packKeys: [String: String]
    /// Fired when shutdown cancels running handlers: their failures mean "hand back".
    private let handlersCancelled = ShutdownSignal()
    private let startedAt: Date
    /// What heartbeats list, made once.
    private let heartbeatQueues: [String]
    private let newestTaken = NewestTaken()
    /// Where handlers' progress reports go.
    private let progressSink: ProgressSink
    /// Tracked tasks' start events, sent only for tasks still running after a moment.
    private let deferredStarts = DeferredStarts()
    /// Step outcomes the coordinator takes in packs go through here.
    private let eventPacker: EventPacker
    /// Revoked task ids, from the revocation stream.
    let revocations = Revocations()
    /// Metric handles per consumed queue, made once (queues are fixed).
    private let queueMetrics: [String: QueueMetrics]
    private let phase = Mutex("running")
    /// What the settlement of each delivery depends on, made once.
    private let settlementSettings: SettlementStateMachine.Settings
    /// Each handler wrapped in the middleware, once (not per task).
    private let chains: HandlerRegistry
    /// The rate limits' schedule; nil without limits.
    let rateGate: RateGate?
    /// Whether heartbeats list the rate limits yet: only once the worker
    /// takes tasks, or peers would give it a share it does not use.
    let rateLimitsAnnounced = Mutex(false)

    /// The worker's counters now.
    public var stats: Stats { statsBox.withLock { $0 } }

    public init(broker: any Broker, registry: HandlerRegistry, configuration: Configuration,
                logger: Logger = Logger(label: "sluice.worker")) {
        self.broker = broker
        self.registry = registry
        self.configuration = configuration
        self.settlementSettings = Self.settlementSettings(configuration, topology: broker.topology)
        self.chains = registry.wrapped { Self.chain(configuration, $0) }
        self.logger = logger
        self.eventDemand = Mutex(EventDemand(hold: configuration.unheardEventHold))
        let topology = broker.topology
        self.packKeys = Dictionary(Self.baseQueues(configuration).flatMap { queue in
            Topology.packedEventKinds.map { (topology.eventRoutingKey(queue: queue, kind: $0), topology.plainEventPackRoutingKey(queue: queue, kind: $0)) }
        }, uniquingKeysWith: { first, _ in first })
        self.heartbeatQueues = Self.levelNames(configuration)
        let factory = configuration.metricsFactory ?? MetricsSystem.factory
        self.queueMetrics = Dictionary(Self.baseQueues(configuration).map { ($0, QueueMetrics(queue: $0, factory: factory)) },
                                       uniquingKeysWith: { first, _ in first })
        self.progressSink = ProgressSink(worker: configuration.workerID)
        // To the millisecond, as heartbeats carry it: peers name this worker by it.
        let startedAt = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 * 1000).rounded(.down) / 1000)
        self.startedAt = startedAt
        // Ordered workers share the partitions out by the same roster.
        let ordered = configuration.ordered && !configuration.consumesIsolationQueues
        self.rateGate = configuration.rateLimits.isEmpty && !ordered ? nil
            : RateGate(me: configuration.workerID, startedAt: startedAt, limits: configuration.rateLimits,
                       orderedQueues: ordered ? Self.baseQueues(configuration) : [])
        self.eventPacker = EventPacker { [broker] pack, delivery in
            let results = if let delivery { try await broker.publish([pack], settling: delivery) } else { try await broker.publish([pack]) }
            // Unroutable is no failure for an event (see publishAll).
            guard case .failure(let error) = results[0] else { return true }
            if PublishFailure.isUnroutable(error) { return false }
            throw error
        }
        progressSink.connect { [weak self] event in self?.publishProgress(event) }
    }

    private var topology: Topology { broker.topology }

    public func run() async throws {
        let queues = configuration.queues
        guard !queues.isEmpty else { throw SluiceError(.invalidArgument, "the worker needs at least one queue") }
        for queue in queues { try Topology.validateQueue(queue) }
        for limit in configuration.rateLimits { try limit.validate() }
        let sources = Self.sources(configuration)
        try await broker.prepare(queues: Self.levelNames(configuration))
        if configuration.ordered && !configuration.consumesIsolationQueues {
            try await broker.prepareOrdered(queues: Self.baseQueues(configuration))
        }
        if configuration.admission != nil || configuration.consumesIsolationQueues {
            try await broker.prepareIsolation(queues: Self.baseQueues(configuration))
        }
        let running = RunningTasks()
        // Revocations first: a task revoked before this worker started must not run here.
        var revocationFollower: Task<Void, Never>?
        defer { revocationFollower?.cancel() }
        if configuration.followsRevocations {
            let caughtUp = ShutdownSignal()
            revocationFollower = Task { await self.followRevocations(running: running, caughtUp: caughtUp) }
            let limit = configuration.revocationCatchUp
            let timedOut = ShutdownSignal()
            let timer = Task {
                guard (try? await Task.sleep(for: limit)) != nil else { return }
                timedOut.fire()
                caughtUp.fire()
            }
            await caughtUp.wait()
            timer.cancel()
            if timedOut.isFired {
                logger.error("the revocation stream was not read in time; taking tasks anyway (a task revoked earlier may run)",
                             metadata: ["waited": "\(limit)"])
            } else if revocations.count > 0 {
                logger.info("revocations read", metadata: ["tasks": "\(revocations.count)"])
            }
        }
        // Rate limits and ordered partitions: hear the peers first, or this
        // worker would take the whole limit, or every partition.
        // Beating already, so that peers count this worker by the time it takes tasks.
        let heartbeat = Task { await self.heartbeats() }
        var rosterFollower: Task<Void, Never>?
        defer { rosterFollower?.cancel() }
        if let rateGate {
            do { rosterFollower = try await joinRateLimitedFleet(rateGate) } catch {
                heartbeat.cancel()
                throw error
            }
        }
        if rateGate != nil {
            rateLimitsAnnounced.withLock { $0 = true }
            await sendHeartbeat()
        }
        var consumers: [(Source, BrokerConsumer)] = []
        // With priorities a level may hold twice the slots: with only as many
        // as there are, a level running most of them would have none left
        // waiting when a slot frees, and its weight would not count.
        // The process for crash suspects holds one at a time: a crash returns
        // every delivery it holds, each counting toward the delivery limit.
        let prefetch = configuration.consumesIsolationQueues ? configuration.concurrency
            : configuration.prefetch.map { max(1, $0) }
            ?? (configuration.priorities == nil ? configuration.concurrency : 2 * configuration.concurrency)
        for source in sources {
            // A partition's tasks run one at a time: one unacknowledged delivery.
            consumers.append((source, try await broker.consume(queue: source.brokerQueue(topology),
                                                               prefetch: source.orderPartition == nil ? prefetch : 1)))
        }
        logger.info("worker started", metadata: [
            "queues": "\(queues.joined(separator: ","))", "concurrency": "\(configuration.concurrency)",
            "tasks": "\(registry.names.joined(separator: ","))",
        ])
        let consumersToStop = consumers
        let rateWaits = configuration.rateLimits.isEmpty ? nil : rateGate.map { RateWaits(gate: $0) }
        let partitions = PartitionControl()
        for (source, consumer) in consumers {
            if let p = source.orderPartition { partitions.register(PartitionControl.key(source.queue, p), consumer) }
        }
        let slots = SlotPool(configuration.concurrency, weights: configuration.priorities.map { w in
            TaskPriority.highestFirst.map { w.weight(of: $0) }
        } ?? [1])
        let stopping = ShutdownSignal()
        let starts = Task { await self.deferredStarts.run { try? await self.publishAll($0) } }
        if configuration.priorities == nil && !configuration.consumesIsolationQueues {
            Task { await self.warnAboutUnreadLevels() }
        }
        let pings = Task { await self.answerPings() }
        let rebalancer = rateGate.flatMap { gate in
            configuration.ordered && !configuration.consumesIsolationQueues
                ? Task { await self.shareOutPartitions(partitions, gate: gate, queues: Self.baseQueues(configuration)) } : nil
        }
        let liveConsumers = SharedCount(consumers.count)
        let consumerFailure = FirstError()

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for (source, consumer) in consumersToStop {
                    let queue = source.queue, priority = source.priority, level = source.slotLevel
                    // Looked up once per consumer, not per delivery.
                    let metrics = self.queueMetrics[queue]
                    // An isolation queue is not the work queue whose age this bounds.
                    var newest: UInt64 = source.isolation || source.orderPartition != nil ? .max : 0
                    let inPlace = source.orderPartition != nil
                    let partitionKey = source.orderPartition.map { PartitionControl.key(queue, $0) }
                    let levelName = source.levelName
                    let rateGate = self.rateGate, queueKey = rateGate?.queueKey(queue)
                    // No trace of whoever runs the worker leaks into tasks: a task
                    // without a traceparent runs (and enqueues) outside any trace.
                    group.addTask { await TraceParent.$current.withValue(nil) {
                        // Gives a delivery that will not start back to the broker. Not a
                        // partition's: its consumer stays active until shutdown closes its
                        // channel (a reject would bring the delivery straight back to it,
                        // and a cancel would hand the partition on while its task still
                        // runs here); the close returns what it holds, in one step.
                        // A partition's delivery is settled or dropped: give the partition up now if asked to.
                        @Sendable func endPartitionDelivery(_ key: String) {
                            guard let (consumer, owner) = partitions.endDelivery(key) else { return }
                            self.logger.info("giving an ordered partition up to its owner, its delivery settled", metadata: [
                                "queue": "\(queue)", "partition": "\(source.orderPartition ?? 0)", "owner": "\(owner ?? "?")"])
                            running.start { await consumer.close() }
                        }
                        @Sendable func handBack(_ delivery: BrokerDelivery) {
                            guard !inPlace else { return }
                            running.start { try? await delivery.reject(requeue: true) }
                        }
                        // Starts now if a slot is free, else when one is released to this level;
                        // handed back without a slot if shutdown comes first.
                        // `granted`: told once it holds a slot or is handed back (rate limits count starts then).
                        @Sendable func startInSlot(_ delivery: BrokerDelivery, granted: (@Sendable () -> Void)? = nil) {
                            slots.submit(level: level) { run in
                                granted?()
                                guard run else { return handBack(delivery) }
                                // Unstructured, so that shutdown can cancel just the handlers.
                                running.start {
                                    if stopping.isFired || delivery.isStale {
                                        // Shutdown came, or the connection was lost (the broker
                                        // delivers it again): hand it back, do not start it.
                                        if !delivery.isStale && !inPlace { try? await delivery.reject(requeue: true) }
                                        if delivery.isStale, let partitionKey { endPartitionDelivery(partitionKey) }
                                        slots.release()
                                        return
                                    }
                                    self.statsBox.withLock { $0.inFlight += 1 }
                                    metrics?.inFlight.increment()
                                    // Once the delivery is acknowledged, handed back or dropped.
                                    @Sendable func settled() {
                                        self.statsBox.withLock { $0.inFlight -= 1; $0.processed += 1 }
                                        metrics?.inFlight.decrement()
                                        if let partitionKey { endPartitionDelivery(partitionKey) }
                                        slots.release()
                                    }
                                    // (Made only when used: no allocation per task otherwise.)
                                    let settlement = await self.process(delivery, queue: queue, priority: priority, inPlace: inPlace, metrics: metrics) {
                                        SettlingLater(running: running, settled: settled)
                                    }
                                    if settlement == .finished { settled() }
                                }
                            }
                        }
                        var consumer = consumer
                        consuming: while true {
                        do {
                            for try await delivery in consumer {
                                // Busy from its arrival to its ack (a partition's, with a prefetch of 1);
                                // one from a partition just given up never starts (the broker took it back).
                                if let partitionKey, !partitions.beginDelivery(partitionKey) { continue }
                                if let stamp = delivery.properties.timestamp, stamp > newest {
                                    newest = stamp
                                    self.newestTaken.record(stamp, queue: levelName)
                                }
                                if stopping.isFired {
                                    // Received before the consumer was cancelled: hand it back, do not start it.
                                    handBack(delivery)
                                    continue
                                }
                                // Over a rate limit, it waits (holding no slot) for its start time;
                                // the rest of the backlog waits in the queue, past the prefetch.
                                if let rateGate, let rateWaits,
                                   let keys = rateGate.keys(taskName: TaskEnvelope.taskName(delivery.properties), queueKey: queueKey) {
                                    rateWaits.submit(keys: keys, isStale: { delivery.isStale }) { run, granted in
                                        if run {
                                            startInSlot(delivery, granted: granted)
                                        } else if !delivery.isStale {
                                            handBack(delivery)
                                        } else if let partitionKey {
                                            endPartitionDelivery(partitionKey)
                                        }
                                    }
                                    continue
                                }
                                startInSlot(delivery)
                            }
                        } catch {
                            // (A partition's consumer ends with its channel, closed at shutdown
                            // or to give the partition up.)
                            let yielded = partitionKey.map { partitions.isYielded($0) } ?? false
                            if !(stopping.isFired && inPlace) && !yielded {
                                self.logger.error("consumer ended", metadata: ["queue": "\(queue)", "error": "\(error)"])
                            }
                            if !stopping.isFired && !yielded { consumerFailure.set(error) }
                        }
                        // A partition given up to its owner: subscribe again, at the back of the line.
                        if let partitionKey, partitions.takeYielded(partitionKey) {
                            // Tried until it works or shutdown comes: a partition nobody here reads
                            // would be handed round the others for ever.
                            var wait = Duration.milliseconds(500)
                            while !stopping.isFired {
                                do {
                                    consumer = try await self.broker.consume(queue: source.brokerQueue(self.topology), prefetch: 1)
                                    partitions.register(partitionKey, consumer)
                                    // Shutdown came meanwhile: nothing of it runs yet, so it can close now.
                                    if stopping.isFired { await consumer.close() }
                                    continue consuming
                                } catch {
                                    self.logger.warning("could not subscribe to an ordered partition again; retrying", metadata: [
                                        "queue": "\(queue)", "partition": "\(source.orderPartition ?? 0)", "error": "\(error)"])
                                    try? await Task.sleep(for: wait)
                                    wait = min(wait * 2, .seconds(10))
                                }
                            }
                        }
                        break
                        }
                        // With every consumer gone (shutdown, or the broker cancelled them), stop.
                        if liveConsumers.decrement() == 0 { stopping.fire() }
                    } }
                }
                // Shutdown: cancel the consumers, which ends the loops above,
                // and hand back at once what waits for a slot.
                group.addTask {
                    await stopping.wait()
                    rateWaits?.abandonWaiting()
                    slots.abandonWaiting()
                    rebalancer?.cancel()
                    for (source, consumer) in consumersToStop where source.orderPartition == nil { try? await consumer.cancel() }
                    // Partitions (see handBack): once the running tasks are done, close their channels.
                    guard consumersToStop.contains(where: { $0.0.orderPartition != nil }) else { return }
                    await self.drain(running)
                    for consumer in partitions.consumers { await consumer.close() }
                }
            }
        } onGracefulShutdown: {
            self.logger.info("shutting down: no new tasks; waiting for running ones")
            stopping.fire()
        }
        phase.withLock { $0 = "stopping" }
        await sendHeartbeat()
        // Beats go on while draining (up to twice the shutdown grace): a
        // draining worker is `stopping`, not gone.
        await drain(running)
        heartbeat.cancel()
        starts.cancel()
        pings.cancel()
        phase.withLock { $0 = "stopped" }
        await sendHeartbeat()
        logger.info("worker stopped", metadata: ["processed": "\(stats.processed)"])
        if let error = consumerFailure.value {
            // A consumer died under us: fail, so that a supervisor restarts the worker.
            throw SluiceError(.broker, "a consumer ended: \(error)")
        }
    }

    /// Tasks waiting at a priority level this worker does not consume wait
    /// until a worker with priorities comes: say so once, at start.
    private func warnAboutUnreadLevels() async {
        let consumed = Set(Self.levelNames(configuration))
        for name in configuration.queues where Topology.splitLevel(name) == (name, .normal) {
            for level in [TaskPriority.high, .low] where !consumed.contains(Topology.levelName(name, level)) {
                let levelName = Topology.levelName(name, level)
                // A level nobody created fails the passive declare: nothing waits there.
                guard let state = try? await broker.queueState(topology.workQueue(levelName)), state.messageCount > 0 else { continue }
                logger.warning("tasks wait at a priority level this worker does not consume; start workers of the queue with --priorities",
                               metadata: ["queue": "\(levelName)", "ready": "\(state.messageCount)"])
            }
        }
    }

    /// Lets running tasks finish for the shutdown grace period; cancels the
    /// rest, which returns their deliveries to the queue.
    private func drain(_ running: RunningTasks) async {
        guard !running.isIdle else { return }
        let grace = configuration.shutdownGrace
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { await running.waitUntilEmpty(); return true }
            group.addTask { (try? await Task.sleep(for: grace)) != nil ? false : true }
            if await group.next() == false {
                // (Deliveries whose outcome waits in a pack are not cancelled: their handlers returned.)
                logger.warning("returning unfinished tasks to the queue", metadata: [
                    "count": "\(running.count)", "outcomes.unconfirmed": "\(running.settlementsPending)"])
                handlersCancelled.fire()
                running.cancelAll()
                // Handlers that ignore cancellation get one more grace period; after
                // that the worker stops anyway, and closing the connection returns
                // their deliveries to the queue.
                group.addTask { (try? await Task.sleep(for: grace)) != nil ? false : true }
                if await group.next() == false {
                    logger.error("handlers ignored cancellation, or outcomes were not confirmed; stopping without them", metadata: [
                        "count": "\(running.count)", "outcomes.unconfirmed": "\(running.settlementsPending)"])
                }
            }
            group.cancelAll()
        }
    }

    // MARK: One delivery

    /// Runs one delivery to its outcome, then acknowledges it. Never throws.
    /// ``Settlement/byPacker`` when the delivery is settled after this
    /// returns (see ``SettlingLater``, made by `later` then): its `settled`
    /// is called then, not by the caller.
    private func process(_ delivery: BrokerDelivery, queue: String, priority: TaskPriority?, inPlace: Bool, metrics: QueueMetrics?,
                         later: () -> SettlingLater) async -> Settlement {
        do {
            return try await settle(delivery, queue: queue, priority: priority, inPlace: inPlace, metrics: metrics, later: later)
        } catch {
            await settleFailed(delivery, error, queue: queue)
            return .finished
        }
    }

    /// A delivery whose outcome could not be published or acknowledged.
    private func settleFailed(_ delivery: BrokerDelivery, _ error: any Error, queue: String) async {
        if PublishFailure.isStale(error) {
            // Its connection was lost: the broker delivers it again, nothing to hand back.
            logger.info("a delivery from a lost connection was not settled; the broker redelivers it", metadata: ["queue": "\(queue)"])
            return
        }
        if error is StepOutcomeUnroutable {
            // A step's outcome no coordinator queue took (deleted, or its
            // bindings changed): handed back after a pause, so that the
            // delivery limit is not spent at once while they are put back.
            logger.error("a workflow step's outcome reached no coordinator queue; the task goes back to its queue and runs again (at the delivery limit it is dead-lettered)",
                         metadata: ["queue": "\(queue)", "task.id": "\(delivery.properties.messageId ?? "")", "error": "\(error)"])
            try? await Task.sleep(for: Self.unroutableStepPause)
            try? await delivery.reject(requeue: true)
            return
        }
        // Publishing the outcome failed: hand the delivery back so the broker
        // delivers it again (a cancelled one goes back when its channel closes).
        logger.error("could not settle a delivery; it will be redelivered", metadata: ["queue": "\(queue)", "error": "\(error)"])
        if !(error is CancellationError) { try? await delivery.reject(requeue: true) }
    }

    /// What a step's outcome event that came back unroutable fails its
    /// settlement with: the delivery is handed back, not acknowledged.
    struct StepOutcomeUnroutable: Error, CustomStringConvertible {
        let routingKey: String
        var description: String { "no queue is bound for the workflow step outcome \(routingKey) (is the coordinator's queue there?)" }
    }

    /// How long a delivery whose step outcome came back unroutable is held before it goes back.
    static let unroutableStepPause = Duration.seconds(1)

    /// Where a delivery's processing left it.
    enum Settlement {
        /// Acknowledged, handed back or given up: the caller frees its slot.
        case finished
        /// Its outcome waits in a pack: the packer's settlement acknowledges
        /// it after the pack's confirm and frees the slot (``SettlingLater``).
        case byPacker
    }

    /// How a delivery may be settled after its task ends: a success whose
    /// outcome event goes only in a pack (a plain task's, or a workflow
    /// step's on its coordinator's pack key) is acknowledged once
    /// the pack is confirmed, by the packer's settlement task (see
    /// ``EventPacker/enqueue(_:settling:then:)``), so the task that ran it
    /// does not stay suspended for the confirm. `running` keeps shutdown
    /// waiting for it; `settled` frees its slot.
    struct SettlingLater: Sendable {
        let running: RunningTasks
        let settled: @Sendable () -> Void
    }

    /// Drives the delivery's ``SettlementStateMachine``: it decides, this
    /// executes (publishes, runs the handler, acknowledges).
    private func settle(_ delivery: BrokerDelivery, queue: String, priority: TaskPriority?, inPlace: Bool, metrics: QueueMetrics?,
                        later: () -> SettlingLater) async throws -> Settlement {
        var machine = SettlementStateMachine(settings: settlementSettings, queue: queue, priority: priority,
                                             properties: delivery.properties, body: delivery.body)
        machine.eventWanted = { self.eventWanted(routingKey: $0) }
        machine.retriesInPlace = inPlace
        return try await drive(&machine, from: machine.received(now: Date()), delivery, queue: queue, metrics: metrics,
                               later: { inPlace ? nil : later() })
    }

    /// Executes the machine's actions from `action` to the acknowledgement,
    /// or to handing that to the event packer (see ``SettlingLater``).
    @discardableResult
    private func drive(_ machine: inout SettlementStateMachine, from action: SettlementStateMachine.Action, _ delivery: BrokerDelivery,
                       queue: String, metrics: QueueMetrics?, later: () -> SettlingLater? = { nil }) async throws -> Settlement {
        var action = action
        while true {
            switch action {
            case .log(.unsignedStep(let taskID, let runID)):
                logger.warning("a task names a workflow step the coordinator did not sign; it runs as a plain task",
                               metadata: ["task.id": "\(taskID)", "run": "\(runID)"])
                action = machine.logged()
            case .log(.replyRefused(let error)):
                logger.warning("a task's reply was refused (its queue gone or full, or too large); the task succeeded, the waiting producer is not answered",
                               metadata: ["queue": "\(queue)", "error": "\(error)"])
                action = machine.logged()
            case .log(.overLimit(let error)):
                logger.warning("a message breaks a wire limit; dead-lettering instead", metadata: ["queue": "\(queue)", "error": "\(error)"])
                action = machine.logged()
            case .admit(let task):
                if let revoked = revocations.revocation(of: task.id) {
                    action = machine.admitted(.deadLetter(.revoked, "revoked at \(revoked.at)" + (revoked.reason.map { ": \($0)" } ?? "")))
                } else {
                    let verdict = configuration.admission?(task) ?? .run
                    // A partition's task is not isolated: the isolation queue would
                    // run it apart from its key's order (a poison verdict still stands).
                    action = machine.admitted(machine.retriesInPlace && verdict == .isolate ? .run : verdict)
                }
            case .run(let task, let waited, let started):
                guard let handler = chains.handler(for: task.name) else {
                    action = machine.noHandler(registered: registry.names)
                    continue
                }
                var startToken: Int?
                if let started, eventWanted(routingKey: started.routingKey) {
                    if configuration.publishStartedEvents {
                        Task { try? await self.publishAll([started]) }
                    } else {
                        // Only tracking asked for it: sent if the task still runs a moment later.
                        startToken = deferredStarts.add(started)
                    }
                }
                let finished = await run(task, handler, waited: waited, metrics: metrics)
                if let startToken { deferredStarts.withdraw(startToken) }
                guard let finished else {
                    // Shutdown cancelled this task past its grace: hand it back whatever
                    // the handler returned (nothing about it has been published). A
                    // partition's goes back when shutdown closes its channel.
                    if !machine.retriesInPlace { try? await delivery.reject(requeue: true) }
                    return .finished
                }
                // Jitter only matters for a retry: no random draw for a success.
                let jitter = if case .failure = finished.outcome { Double.random(in: 0..<1) } else { 0.0 }
                guard finished.revoked else {
                    action = machine.handlerFinished(finished.outcome, milliseconds: finished.milliseconds, now: Date(), jitter: jitter)
                    continue
                }
                // A revocation cancelled this task: a handler that failed (or
                // gave up) is dead as revoked; one that finished anyway succeeded.
                // The rest runs in a task of its own, which the cancellation does not reach.
                let entry = revocations.revocation(of: task.id)
                let outcome: Result<[UInt8]?, any Error> = switch finished.outcome {
                case .success(let result): .success(result)
                case .failure: .failure(TaskRevoked(at: entry?.at, reason: entry?.reason))
                }
                let next = machine.handlerFinished(outcome, milliseconds: finished.milliseconds, now: Date(), jitter: jitter)
                let rest = machine
                try await Task {
                    var machine = rest
                    try await self.drive(&machine, from: next, delivery, queue: queue, metrics: metrics)
                }.value
                return .finished
            case .publish(let message):
                // (An outcome event nobody listens to never gets here: the machine asked ``eventWanted``.)
                if let outcome = machine.ackAfterPublish, !delivery.isStale, let pack = packedOnly(message), let later = later() {
                    later.running.settlementStarted()
                    eventPacker.enqueue(pack, settling: delivery) { result in
                        await self.settleAfterPack(result, packKey: pack.routingKey, outcome: outcome, delivery, queue: queue, metrics: metrics) {
                            later.settled()
                            later.running.settlementEnded()
                        }
                    }
                    return .byPacker
                }
                do {
                    try await publishAll([message], settling: delivery)
                    action = machine.published()
                } catch where PublishFailure.isRefusedByDestination(error) {
                    action = machine.publishRefused(error)
                }
            case .publishEvent(let message):
                await publishEvent(message, settling: delivery)
                action = machine.eventSent()
            case .retryInPlace(let milliseconds):
                // Holding the delivery. Shutdown cancels the wait, and the delivery goes
                // back when shutdown closes the partition's channel; a revocation with
                // `terminate` cancels it too, and the task is dead as revoked.
                guard RunningTasks.markRunningAgain() else { return .finished }
                if (try? await Task.sleep(for: .milliseconds(milliseconds))) == nil {
                    guard !delivery.isStale, case .revoked = RunningTasks.markSettling(),
                          let waiting = machine.taskWaitingToRetry else { return .finished }
                    let entry = revocations.revocation(of: waiting.id)
                    let next = machine.retryRevoked(TaskRevoked(at: entry?.at, reason: entry?.reason))
                    let rest = machine
                    // In a task of its own, which the cancellation does not reach.
                    try await Task {
                        var machine = rest
                        try await self.drive(&machine, from: next, delivery, queue: queue, metrics: metrics)
                    }.value
                    return .finished
                }
                guard !delivery.isStale else { return .finished }
                statsBox.withLock { $0.retried += 1 }
                metrics?.outcome(.retried, task: machine.taskName).increment()
                action = machine.retryDue(now: Date())
            case .ack(let outcome):
                count(outcome, queue: queue, metrics: metrics)
                try await delivery.ack()
                // After the ack: a lock given back before it could let a
                // duplicate in while this delivery might still come again.
                if let lock = machine.uniqueLock, outcome.isFinal { await releaseUniqueLock(lock.ticket, taskID: lock.taskID) }
                return .finished
            case .fail(let error):
                throw error
            }
        }
    }

    /// Gives a finished task's unique lock back, while it surely is the
    /// task's own (not near its expiry, when another may have taken it).
    /// If this fails, the lock expires with its window.
    private func releaseUniqueLock(_ lock: UniqueLockTicket, taskID: String) async {
        guard lock.isHeld(at: Date()) else { return }
        do {
            try await broker.releaseUniqueLock(queue: lock.queue, taskID: taskID)
        } catch {
            logger.warning("could not give a unique key's lock back; it expires with its window",
                           metadata: ["lock": "\(lock.queue)", "error": "\(error)"])
        }
    }

    /// The pack carrying a delivery's outcome (see ``SettlingLater``) was
    /// confirmed or failed: acknowledges the delivery, or hands it back;
    /// then `done`.
    private func settleAfterPack(_ result: Result<Bool, any Error>, packKey: String, outcome: SettlementStateMachine.Outcome,
                                 _ delivery: BrokerDelivery, queue: String, metrics: QueueMetrics?,
                                 then done: @escaping @Sendable () -> Void) async {
        do {
            let routed = try result.get()
            heard(packKey, routed: routed)
            if !routed, Topology.isStepEventKey(packKey) {
                // Handed back after its pause in a task of its own: the pack's
                // settlements run one after another, and must not wait a second each.
                Task {
                    await self.settleFailed(delivery, StepOutcomeUnroutable(routingKey: packKey), queue: queue)
                    done()
                }
                return
            }
            count(outcome, queue: queue, metrics: metrics)
            try await delivery.ack()
        } catch {
            await settleFailed(delivery, error, queue: queue)
        }
        done()
    }

    /// Runs a task's handler through the middleware; nil when shutdown
    /// cancelled it past its grace (its delivery goes back).
    private func run(_ task: TaskEnvelope, _ handler: @escaping HandlerRegistry.Handler, waited: Double?,
                     metrics: QueueMetrics?) async -> (outcome: Result<[UInt8]?, any Error>, milliseconds: Double, revoked: Bool)? {
        let context = TaskContext(task: task, logger: logger, progress: progressSink)
        // Findable by a revocation with `terminate` from now on; one that came
        // since the admission check (and so did not find it) is applied here.
        RunningTasks.handlerStarting(taskID: task.id)
        if revocations.revocation(of: task.id)?.terminate == true { RunningTasks.current?.tasks.terminate(taskID: task.id) }
        if let waited { metrics?.wait.recordNanoseconds(Int64(waited * 1_000_000)) }

        // The handler runs in a span of the task's trace: tasks it enqueues join it.
        let span = task.traceparent.flatMap(TraceParent.init)?.child(seed: "\(task.id)/\(task.attempt)")
        configuration.taskReporter?(.started(taskID: task.id))
        let start = ContinuousClock.now
        let outcome: Result<[UInt8]?, any Error>
        do {
            // No trace to join: no task-local to set (the consumer loop cleared it).
            if let span {
                outcome = .success(try await TraceParent.$current.withValue(span) { try await handler(context) })
            } else {
                outcome = .success(try await handler(context))
            }
        } catch {
            outcome = .failure(error)
        }
        configuration.taskReporter?(.finished(taskID: task.id))
        let milliseconds = (ContinuousClock.now - start).timeInterval * 1000
        switch RunningTasks.markSettling() {
        case .handBack: return nil
        case .settle: return (outcome, milliseconds, false)
        case .revoked: return (outcome, milliseconds, true)
        }
    }

    /// Counts and logs how a delivery ended.
    private func count(_ outcome: SettlementStateMachine.Outcome, queue: String, metrics: QueueMetrics?) {
        switch outcome {
        case .forwarded:
            break
        case .succeeded(let task):
            statsBox.withLock { $0.succeeded += 1 }
            metrics?.outcome(.succeeded, task: task).increment()
        case .retried(let task):
            statsBox.withLock { $0.retried += 1 }
            metrics?.outcome(.retried, task: task).increment()
        case .dead(let task, let id, let reason, let message):
            logger.warning("task dead-lettered", metadata: [
                "queue": "\(queue)", "reason": "\(reason.rawValue)", "task.id": "\(id)", "error": "\(message)",
            ])
            statsBox.withLock { $0.dead += 1 }
            metrics?.outcome(.dead, task: task).increment()
        }
    }

    private static func settlementSettings(_ configuration: Configuration, topology: Topology) -> SettlementStateMachine.Settings {
        SettlementStateMachine.Settings(
            topology: topology, workerID: configuration.workerID, maxBodyBytes: configuration.maxBodyBytes,
            maxResultBytes: configuration.maxResultBytes, retryPolicy: configuration.retryPolicy,
            eventSigner: configuration.eventSigner, publishStartedEvents: configuration.publishStartedEvents)
    }

    /// `handler` inside the configured middleware (the first is outermost;
    /// inactive ones left out), then the time limit.
    private static func chain(_ configuration: Configuration, _ handler: @escaping HandlerRegistry.Handler) -> HandlerRegistry.Handler {
        var chain: HandlerRegistry.Handler = handler
        var layers = configuration.middleware
        if let limit = configuration.timeLimit { layers.append(TimeLimitMiddleware(limit: limit, grace: configuration.timeLimitGrace)) }
        for middleware in layers.reversed() where middleware.isActive {
            let next = chain
            chain = { try await middleware.handle($0, next: next) }
        }
        return chain
    }

    /// Publishes a report and waits for the broker; a failure is logged, not thrown.
    private func publishEvent(_ message: OutboundMessage, settling delivery: BrokerDelivery) async {
        do {
            try await publishAll([message], settling: delivery)
        } catch {
            logger.warning("could not publish a task event", metadata: ["type": "\(message.properties.type ?? "")",
                                                                        "message.id": "\(message.properties.messageId ?? "")",
                                                                        "error": "\(error)"])
        }
    }

    /// Publishes and requires every message confirmed. An event nobody has
    /// bound a queue for is confirmed as unroutable: that is fine for a plain
    /// task's events, and tells ``eventDemand`` that nobody listens to its
    /// key; a workflow step's fails with ``StepOutcomeUnroutable``.
    /// `settling`: the delivery whose outcome these are; nothing goes out once
    /// its connection is lost (it comes again: see ``Broker/publish(_:settling:)``).
    private func publishAll(_ messages: [OutboundMessage], settling delivery: BrokerDelivery? = nil) async throws {
        if messages.count == 1, Topology.isEventPackKey(messages[0].routingKey) {
            if let delivery, delivery.isStale { throw PublishFailure.staleOutcome }
            let routed = try await eventPacker.publish(messages[0], settling: delivery)
            if !routed, Topology.isStepEventKey(messages[0].routingKey) { throw StepOutcomeUnroutable(routingKey: messages[0].routingKey) }
            return
        }
        // A plain task's outcome event goes alone to `<queue>.<kind>`, in a
        // pack to `~pack.<kind>.<queue>.~`, or both: each while somebody is bound to it.
        var direct = messages
        var packed: [OutboundMessage] = []
        for index in messages.indices.reversed() {
            guard let (pack, alone) = plainPackRoute(messages[index]) else { continue }
            packed.append(pack)
            if !alone { direct.remove(at: index) }
        }
        if packed.isEmpty { return try await publishDirect(direct, settling: delivery) }
        if let delivery, delivery.isStale { throw PublishFailure.staleOutcome }
        if direct.isEmpty { return try await publishPacks(packed, settling: delivery) }
        async let packs: Void = publishPacks(packed, settling: delivery)
        try await publishDirect(direct, settling: delivery)
        try await packs
    }

    /// An outcome event as the pack it goes in, when it goes in a pack only:
    /// a workflow step's whose coordinator asked for packs, or a plain
    /// task's when somebody is bound to its pack key and nobody to its own.
    private func packedOnly(_ message: OutboundMessage) -> OutboundMessage? {
        // A step's outcome on its coordinator's pack key: always in a pack.
        if message.exchange == topology.eventsExchange, Topology.isEventPackKey(message.routingKey) { return message }
        guard let (pack, alone) = plainPackRoute(message), !alone else { return nil }
        return pack
    }

    /// A plain task's outcome event as the pack it goes in, when somebody is
    /// bound to its pack key (`~pack.<kind>.<queue>.~`), and whether it also
    /// goes alone to `<queue>.<kind>` (somebody is bound to that too).
    private func plainPackRoute(_ message: OutboundMessage) -> (pack: OutboundMessage, alone: Bool)? {
        guard message.exchange == topology.eventsExchange, let packKey = plainPackKey(forEventKey: message.routingKey) else { return nil }
        let now = ContinuousClock.now
        let (alone, inPack) = eventDemand.withLock { ($0.wanted(message.routingKey, now: now), $0.wanted(packKey, now: now)) }
        guard inPack else { return nil }
        var pack = message
        pack.routingKey = packKey
        return (pack, alone)
    }

    /// The pack key of a plain task's outcome event, when packs may be
    /// asked for: not with ``Configuration/unheardEventHold`` zero (every
    /// event goes alone then; probing packs would double each outcome).
    private func plainPackKey(forEventKey key: String) -> String? {
        guard configuration.unheardEventHold > .zero else { return nil }
        return packKeys[key] ?? topology.plainEventPackRoutingKey(forEventKey: key)
    }

    /// Plain tasks' events through the packer; a pack nobody is bound for
    /// holds back that key's packs as an unheard event key does.
    private func publishPacks(_ packs: [OutboundMessage], settling delivery: BrokerDelivery?) async throws {
        for pack in packs {
            heard(pack.routingKey, routed: try await eventPacker.publish(pack, settling: delivery))
        }
    }

    /// Tells ``eventDemand`` whether a pack reached a queue: one nobody is
    /// bound for holds back that key's packs as an unheard event key does.
    private func heard(_ packKey: String, routed: Bool) {
        eventDemand.withLock { if routed { $0.routed(packKey) } else { $0.unroutable(packKey, now: .now) } }
    }

    private func publishDirect(_ messages: [OutboundMessage], settling delivery: BrokerDelivery?) async throws {
        let results = if let delivery { try await broker.publish(messages, settling: delivery) } else { try await broker.publish(messages) }
        // Thrown after every result is read, so the others' demand is recorded.
        var unroutableStep: String?
        for (message, result) in zip(messages, results) {
            let isEvent = message.exchange == topology.eventsExchange
            switch result {
            case .success:
                if isEvent { eventDemand.withLock { $0.routed(message.routingKey) } }
            case .failure(let error):
                if isEvent, PublishFailure.isUnroutable(error) {
                    eventDemand.withLock { $0.unroutable(message.routingKey, now: .now) }
                    // Nobody listens: the ack alone is a plain task's outcome,
                    // but a step's must reach its coordinator.
                    if Topology.isStepEventKey(message.routingKey) { unroutableStep = unroutableStep ?? message.routingKey }
                    continue
                }
                throw error
            }
        }
        if let unroutableStep { throw StepOutcomeUnroutable(routingKey: unroutableStep) }
    }

    /// A progress report is an event on the task's key, published (not
    /// waited for) when somebody listens.
    private func publishProgress(_ event: TaskEvent) {
        guard eventWanted(routingKey: topology.eventRoutingKey(for: event)) else { return }
        // Signed like outcomes: a coordinator with an event key drops unsigned step events.
        let message = topology.eventMessage(configuration.eventSigner.map { $0.signed(event) } ?? event)
        Task { try? await self.publishAll([message]) }
    }

    /// Whether an event should go out (alone or, for a plain task's outcome,
    /// in a pack); counts the ones held back.
    private func eventWanted(routingKey: String) -> Bool {
        let packKey = plainPackKey(forEventKey: routingKey)
        let wanted = eventDemand.withLock { demand in
            demand.wanted(routingKey, now: .now) || packKey.map { demand.wanted($0, now: .now) } == true
        }
        if wanted { return true }
        statsBox.withLock { $0.eventsHeldBack += 1 }
        return false
    }

    // MARK: Metrics

    /// A consumed queue's handles: the wait histogram, the in-flight meter
    /// (incremented and decremented, so no lock keeps its updates in order)
    /// and the outcome counters of each task name seen on it.
    private final class QueueMetrics: Sendable {
        let queue: String
        let factory: any MetricsFactory
        let wait: Metrics.Timer
        let inFlight: Meter
        typealias Counters = (succeeded: Counter, retried: Counter, dead: Counter)
        /// By task name, and the last name asked for (one comparison instead of a hash, usually).
        let outcomes = Mutex<(byTask: [String: Counters], last: (task: String, counters: Counters)?)>(([:], nil))

        init(queue: String, factory: any MetricsFactory) {
            self.queue = queue
            self.factory = factory
            wait = Metrics.Timer(label: "sluice_task_wait_seconds", dimensions: [("queue", queue)], factory: factory)
            inFlight = Meter(label: "sluice_tasks_in_flight", dimensions: [("queue", queue)], factory: factory)
        }

        enum Kind { case succeeded, retried, dead }

        func outcome(_ outcome: Kind, task: String) -> Counter {
            let counters = outcomes.withLock { cache -> Counters in
                if let last = cache.last, last.task == task { return last.counters }
                func make(_ o: String) -> Counter {
                    Counter(label: "sluice_tasks_total", dimensions: [("task", task), ("queue", queue), ("outcome", o)], factory: factory)
                }
                let c = cache.byTask[task] ?? (make("succeeded"), make("retried"), make("dead"))
                cache.byTask[task] = c
                cache.last = (task, c)
                return c
            }
            switch outcome {
            case .succeeded: return counters.succeeded
            case .retried: return counters.retried
            case .dead: return counters.dead
            }
        }
    }

    // MARK: Heartbeats

    /// The heartbeat now.
    public var heartbeat: WorkerHeartbeat {
        let s = stats
        return WorkerHeartbeat(
            worker: configuration.workerID, host: ProcessInfo.processInfo.hostName,
            // The levels it consumes (`emails~high`, `emails`, `emails~low` with
            // priorities): monitors without the management API list these queues.
            pid: Int(ProcessInfo.processInfo.processIdentifier), queues: heartbeatQueues,
            concurrency: configuration.concurrency, inFlight: s.inFlight, processed: s.processed,
            succeeded: s.succeeded, retried: s.retried, dead: s.dead, startedAt: startedAt, at: Date(),
            state: phase.withLock { $0 }, intervalSeconds: heartbeatInterval.timeInterval,
            newestTaken: newestTaken.dates,
            rateLimits: rateLimitsAnnounced.withLock { $0 } && !configuration.rateLimits.isEmpty ? rateGate?.limits : nil,
            orderedQueues: rateLimitsAnnounced.withLock { $0 } && configuration.ordered && !configuration.consumesIsolationQueues
                ? Self.baseQueues(configuration) : nil)
    }

    func sendHeartbeat() async {
        _ = try? await broker.publish([topology.heartbeatMessage(heartbeat)])
    }

    private func heartbeats() async {
        while !Task.isCancelled {
            await sendHeartbeat()
            try? await Task.sleep(for: heartbeatInterval)
        }
    }

    /// Answers `sluice workers` at once instead of at the next beat.
    /// (An account may lack the right to declare the queue: pings are a
    /// convenience, so a first subscription refused is not asked again.)
    private func answerPings() async {
        let pings: BrokerConsumer
        do {
            pings = try await broker.subscribeEvents(bindings: [topology.workerPingRoutingKey])
        } catch {
            logger.debug("worker pings unavailable", metadata: ["error": "\(error)"])
            return
        }
        await followEvents([topology.workerPingRoutingKey], first: pings, what: "worker pings", level: .debug) { _ in await sendHeartbeat() }
    }
}
