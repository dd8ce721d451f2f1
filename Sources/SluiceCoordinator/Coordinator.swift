import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SluiceCore
import SluiceWorkflow
import Synchronization

/// The coordinator service: runs workflows.
///
/// * Waits as a standby until it holds the store's coordinator lease (one
///   active coordinator per prefix), then keeps renewing it. If another
///   coordinator takes the lease over (after this one stalled past it), it
///   stops its loops, hands its unacknowledged events back to the queue and
///   stands by again. A late renewal keeps a lease nobody took over.
/// * Consumes task outcome events from its own quorum queue (single active
///   consumer) and applies each through the ``RunEngine``: the state change,
///   its outbox rows and timers are committed before the event is acknowledged.
/// * Publishes outbox rows with confirms and marks them sent; rows a crash left
///   unsent are published after the restart (step task ids are stable, so a
///   duplicate publish is harmless).
/// * Fires durable timers when they come due.
public struct Coordinator: Service {
    public struct Configuration: Sendable {
        /// Who holds the lease (`host:pid:random`).
        public var holder: String
        /// How long a lease lasts without renewal; a standby takes over within about this long.
        public var leaseTTL: Duration
        /// Queue for step tasks whose definition names none.
        public var defaultQueue: String
        /// Unacknowledged events at once.
        public var prefetch: Int
        /// Outbox rows published per batch.
        public var outboxBatch: Int
        /// Longest wait between looks at the outbox and the timers.
        public var pollInterval: Duration
        /// How long finished runs are kept after their last change; nil keeps them forever.
        public var retention: Duration?
        /// Checks that every step outcome comes from a worker that holds the
        /// event key: unsigned or badly signed outcomes are dropped, logged
        /// and counted (`sluice_coordinator_forged_events_total`). Nil
        /// accepts every outcome (then only broker permissions keep
        /// producers from writing them: docs/operations.md).
        public var eventVerifier: EventSigner?

        public init(holder: String = Coordinator.defaultHolder, leaseTTL: Duration = .seconds(10), defaultQueue: String = "default",
                    prefetch: Int = 200, outboxBatch: Int = 500, pollInterval: Duration = .milliseconds(250),
                    retention: Duration? = .seconds(30 * 86_400)) {
            self.holder = holder
            self.leaseTTL = leaseTTL
            self.defaultQueue = defaultQueue
            self.prefetch = prefetch
            self.outboxBatch = outboxBatch
            self.pollInterval = pollInterval
            self.retention = retention
            self.eventVerifier = nil
        }
    }

    public struct LeaseLost: Error, CustomStringConvertible {
        public var holder: String
        /// True if the store could not be reached to renew it for a whole lease
        /// TTL: another coordinator may have taken it, or may take it any time.
        public var unconfirmed = false
        public var description: String {
            unconfirmed ? "coordinator \(holder) could not renew its lease for a whole lease TTL"
                        : "coordinator \(holder) lost its lease to another coordinator"
        }
    }

    /// `host:pid:random`.
    public static var defaultHolder: String {
        "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier):\(UInt32.random(in: 0...UInt32.max))"
    }

    public let broker: any Broker
    public let engine: RunEngine
    public let configuration: Configuration
    private let logger: Logger
    private let wake: Wake
    private let activeFlag = ActiveFlag()
    private let forgedCount = SharedCounter()

    /// Step outcomes dropped because no worker signed them (since start).
    public var forgedEvents: Int { forgedCount.value }

    public init(broker: any Broker, engine: RunEngine, configuration: Configuration = Configuration(),
                logger: Logger = Logger(label: "sluice.coordinator")) {
        self.broker = broker
        self.engine = engine
        self.configuration = configuration
        self.logger = logger
        self.wake = Wake()
    }

    /// Whether this coordinator holds the lease and is running workflows.
    public var isActive: Bool { activeFlag.value }

    private var store: any WorkflowStore { engine.store }
    private var leaseName: String { "coordinator:\(broker.topology.prefix)" }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                try await self.standByAndLead()
            }
        } catch is CancellationError {
            // Graceful shutdown: the loops were cancelled; the current event was
            // either committed and acknowledged or will come again.
        } catch {
            activeFlag.set(nil)
            await releaseLeaseAtExit()
            throw error
        }
        activeFlag.set(nil)
        await releaseLeaseAtExit()
        logger.info("coordinator stopped", metadata: ["holder": "\(configuration.holder)"])
    }

    /// Frees the lease for a standby at once, if the store answers soon; a
    /// store that is away only delays the stop, and the lease then expires.
    private func releaseLeaseAtExit() async {
        let holder = activeFlag.lastHolder ?? configuration.holder
        _ = try? await Self.within(min(configuration.leaseTTL / 2, .seconds(3)), "releasing the lease") { [store, leaseName] in
            try await store.releaseLease(leaseName, holder: holder)
        }
    }

    /// Stands by until it holds the lease, leads while it holds it, and
    /// stands by again if another coordinator takes it over.
    private func standByAndLead() async throws {
        var term = 0
        // A term given up without hearing from the store: its lease is freed
        // once the store answers, in case the last renewal did land after all.
        var unconfirmedHolder: String?
        while true {
            term += 1
            // A holder name of its own for each term, so that nothing left of
            // an earlier term can pass the fence of a later one.
            let holder = term == 1 ? configuration.holder : "\(configuration.holder)/\(term)"
            var announced = false
            // Named before asking: a shutdown that cuts the answer off still releases it.
            activeFlag.setCandidate(holder)
            var failedAttempts = 0
            while true {
                do {
                    if let stale = unconfirmedHolder {
                        try await store.releaseLease(leaseName, holder: stale)
                        unconfirmedHolder = nil
                    }
                    let acquired = try await store.acquireLease(leaseName, holder: holder, now: Date(), ttl: configuration.leaseTTL)
                    if failedAttempts > 0 {
                        logger.info("the store answers again", metadata: ["after": "\(failedAttempts) failed attempts"])
                        failedAttempts = 0
                    }
                    if acquired { break }
                    if !announced {
                        logger.info("standing by: another coordinator is active", metadata: ["holder": "\(holder)"])
                        announced = true
                    }
                } catch {
                    if error is CancellationError || Task.isCancelled { throw CancellationError() }
                    // A store that is away (a failover) is waited for, not a reason to exit;
                    // said at the first failure and then every 50 (every 10 TTLs).
                    if failedAttempts % 50 == 0 {
                        logger.warning("cannot reach the store to take the lease; trying again",
                                       metadata: ["error": "\(error)", "attempts": "\(failedAttempts + 1)"])
                    }
                    failedAttempts += 1
                }
                try await Task.sleep(for: configuration.leaseTTL / 5)
            }
            // From here on, every write checks that this term still holds the lease.
            store.setFence(StoreFence(lease: leaseName, holder: holder))
            // Another coordinator may have changed runs since this one last led.
            try await engine.forgetRuns()
            activeFlag.set(holder)
            logger.info("coordinator active", metadata: ["holder": "\(holder)", "prefix": "\(broker.topology.prefix)"])
            do {
                try await lead(as: holder)
                return
            } catch where Self.isLeaseLoss(error) {
                activeFlag.set(nil)
                if (error as? LeaseLost)?.unconfirmed == true { unconfirmedHolder = holder }
                // Reads while standing by come from the store, which the new active one writes.
                try await engine.forgetRuns()
                logger.warning("\(error); standing by", metadata: ["holder": "\(holder)"])
            }
        }
    }

    /// Whether `error` says that another coordinator holds the lease now.
    static func isLeaseLoss(_ error: any Error) -> Bool {
        error is LeaseLost || (error as? StoreError)?.code == .leaseLost
    }

    /// Runs workflows until the lease is lost or shutdown cancels the loops.
    private func lead(as holder: String) async throws {
        // The coordinator queue is declared by each loop that needs it when it
        // starts, so that a broker that is away now delays them instead of failing the start.
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.renewLease(as: holder) }
            group.addTask { try await self.restarting("events") { try await self.consumeEvents() } }
            group.addTask { try await self.restarting("dead letters") { try await self.consumeDeadLetters() } }
            group.addTask {
                try await self.restarting("outbox") {
                    // Bound before step tasks go out, so that their outcomes have a queue to land in.
                    try await self.broker.prepareCoordinatorQueue()
                    try await self.relayOutbox()
                }
            }
            group.addTask { try await self.restarting("timers") { try await self.fireTimers() } }
            group.addTask { try await self.restarting("schedules") { try await self.fireSchedules() } }
            if let retention = configuration.retention {
                group.addTask { try await self.pruneRuns(keeping: retention) }
            }
            // The first to end (a lost lease, or cancellation at shutdown) ends them all.
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    /// Runs one of the leader's loops, and starts it again after an error
    /// other than a lost lease or cancellation: a store or broker that is
    /// away for a while (a PostgreSQL failover, a dropped connection) is
    /// waited out with a capped backoff instead of ending the coordinator.
    /// Nothing is lost meanwhile: events stay in their queue, step tasks in
    /// the outbox, timers and schedules in the store.
    private func restarting(_ loop: String, _ body: @Sendable () async throws -> Void) async throws {
        let restarts = Counter(label: "sluice_coordinator_loop_restarts_total", dimensions: [("loop", loop)])
        var failures = 0
        while true {
            let started = ContinuousClock.now
            let reason: String
            do {
                try await body()
                if Task.isCancelled { return }
                // A consumer the broker cancelled (its queue deleted, say) ends without an error.
                reason = "it ended"
            } catch where Self.isLeaseLoss(error) {
                throw error
            } catch {
                if error is CancellationError || Task.isCancelled { throw CancellationError() }
                reason = "\(error)"
            }
            // A loop that ran a while before it failed starts from the short delay again.
            if ContinuousClock.now - started > Self.restartDelayCap * 2 { failures = 0 }
            let delay = Self.restartDelay(afterFailures: failures)
            failures += 1
            restarts.increment()
            logger.warning("a coordinator loop stopped; starting it again", metadata: [
                "loop": "\(loop)", "error": "\(reason)", "in": "\(delay)"])
            try await Task.sleep(for: delay)
        }
    }

    static let restartDelayCap = Duration.seconds(30)

    /// 0.5 s, 1 s, 2 s ... up to 30 s.
    static func restartDelay(afterFailures failures: Int) -> Duration {
        min(.milliseconds(500) * (1 << min(failures, 10)), restartDelayCap)
    }

    private func renewLease(as holder: String) async throws {
        var lastRenewed = ContinuousClock.now
        while true {
            try await Task.sleep(for: configuration.leaseTTL / 3)
            let renewed: Bool
            do {
                // Bounded: a database that is gone can make a call wait for a
                // connection indefinitely (the PostgreSQL pool does).
                let bound = max(configuration.leaseTTL / 3, configuration.leaseTTL - (ContinuousClock.now - lastRenewed))
                renewed = try await Self.within(bound, "renewing the lease") { [store, leaseName, configuration] in
                    try await store.renewLease(leaseName, holder: holder, now: Date(), ttl: configuration.leaseTTL)
                }
            } catch {
                if error is CancellationError || Task.isCancelled { throw CancellationError() }
                // A failed renewal is tried again at the next tick. After a whole
                // TTL without one, this coordinator cannot know whether it still
                // leads (a standby that reaches the store may have taken over), so
                // it stands by and takes the lease again once the store is back.
                guard ContinuousClock.now - lastRenewed < configuration.leaseTTL else {
                    activeFlag.set(nil)
                    throw LeaseLost(holder: holder, unconfirmed: true)
                }
                logger.warning("could not renew the coordinator lease; trying again", metadata: ["error": "\(error)"])
                continue
            }
            guard renewed else {
                activeFlag.set(nil)
                throw LeaseLost(holder: holder)
            }
            lastRenewed = ContinuousClock.now
        }
    }

    struct TimedOut: Error, CustomStringConvertible {
        var what: String
        var after: Duration
        var description: String { "\(what) took longer than \(after)" }
    }

    /// `body`'s result, or `TimedOut` once `limit` has passed (`body` is then
    /// cancelled and not waited for: a call stuck on a dead connection may ignore it).
    static func within<T: Sendable>(_ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        switch await Abandonable.run(limit, body) {
        case .finished(let result): return try result.get()
        case .timedOut: throw TimedOut(what: what, after: limit)
        case .cancelled: throw CancellationError()
        }
    }

    /// A consumer of `queue` for `body`, closed afterwards whatever happens:
    /// deliveries not yet acknowledged go back to the queue for whoever leads next.
    private func consuming(_ queue: String, prefetch: Int, _ body: (BrokerConsumer) async throws -> Void) async throws {
        // Declared at each start (idempotent): also after a restart because the queue was deleted.
        try await broker.prepareCoordinatorQueue()
        let consumer = try await broker.consume(queue: queue, prefetch: prefetch)
        do {
            try await body(consumer)
        } catch {
            await consumer.close()
            throw error
        }
        await consumer.close()
    }

    private func consumeEvents() async throws {
        try await consuming(broker.topology.coordinatorQueue, prefetch: configuration.prefetch) { consumer in
            let buffer = DeliveryBuffer()
            try await withThrowingTaskGroup(of: Void.self) { group in
                // One task receives; the other applies whatever has arrived as one
                // batch: one commit for many events when they come fast.
                group.addTask {
                    do {
                        for try await delivery in consumer { buffer.push(delivery) }
                        buffer.finish(nil)
                    } catch {
                        buffer.finish(error)
                    }
                }
                group.addTask {
                    while let batch = try await buffer.take(max: self.configuration.prefetch) {
                        try await self.apply(batch)
                    }
                }
                defer { group.cancelAll() }
                try await group.next()
            }
        }
    }

    /// Applies a batch of deliveries in one commit, then acknowledges them.
    private func apply(_ deliveries: [BrokerDelivery]) async throws {
        var events: [TaskEvent] = []
        for delivery in deliveries {
            do {
                let event = try TaskEvent.decode(delivery.body)
                if isAuthentic(event) { events.append(event) }
            } catch {
                logger.warning("an event that is not valid JSON was dropped", metadata: ["error": "\(error)"])
            }
        }
        do {
            try await engine.apply(events)
        } catch is CancellationError {
            throw CancellationError()
        } catch where Self.isLeaseLoss(error) {
            throw error
        } catch {
            // Not committed. Apply them one at a time, so that one event that
            // cannot be applied does not hold the others back; it comes again
            // (applying an event twice changes nothing).
            logger.warning("could not apply a batch of events; applying them one by one", metadata: [
                "count": "\(events.count)", "error": "\(error)"])
            var failed = false
            for delivery in deliveries {
                guard let event = try? TaskEvent.decode(delivery.body), isAuthentic(event, counting: false) else {
                    try await delivery.ack()
                    continue
                }
                do {
                    try await engine.apply([event])
                    try await delivery.ack()
                } catch is CancellationError {
                    throw CancellationError()
                } catch where Self.isLeaseLoss(error) {
                    throw error
                } catch {
                    failed = true
                    logger.error("could not apply an event; it will come again", metadata: [
                        "task.id": "\(event.taskID)", "run": "\(event.workflowRunID ?? "")", "error": "\(error)"])
                    try? await delivery.reject(requeue: true)
                }
            }
            wake.signal()
            if failed { try await Task.sleep(for: .seconds(1)) }
            return
        }
        for delivery in deliveries { try await delivery.ack() }
        wake.signal()
    }

    /// Turns dead-lettered step tasks into `dead` events: RabbitMQ dead-letters
    /// a task that crashed its worker at every delivery by itself, and no
    /// worker is left to report it. (A worker's own dead letters also come
    /// with an event; applying both changes nothing twice.)
    private func consumeDeadLetters() async throws {
        try await consuming(broker.topology.coordinatorDeadQueue, prefetch: 50) { consumer in
            for try await delivery in consumer {
                let headers = delivery.properties.headers ?? [:]
                guard let task = try? TaskEnvelope.decode(properties: delivery.properties, body: delivery.body, queue: ""),
                      task.workflowRunID != nil else {
                    try await delivery.ack()
                    continue
                }
                var event = TaskEvent(kind: .dead, task: task)
                switch broker.topology.deadLetterOrigin(headers) {
                case .deliveryLimit:
                    event.deadReason = .deliveryLimit
                    // The broker dead-letters the message as published: a real
                    // step task carries the coordinator's own signature.
                    if let verifier = configuration.eventVerifier, !verifier.verifyStep(task) {
                        forged(event, why: "a dead letter of a step task the coordinator did not sign")
                        try await delivery.ack()
                        continue
                    }
                case .worker(let reason):
                    event.deadReason = reason
                    event.signature = headers[WireHeader.signature]?.stringValue
                    if !isAuthentic(event) {
                        try await delivery.ack()
                        continue
                    }
                case .other(let why):
                    forged(event, why: why)
                    try await delivery.ack()
                    continue
                }
                event.errorMessage = event.deadReason == .deliveryLimit ? "the task crashed or stalled its worker at every delivery"
                    : headers[WireHeader.errorMessage]?.stringValue
                do {
                    try await engine.apply([event])
                    try await delivery.ack()
                    wake.signal()
                } catch is CancellationError {
                    return
                } catch where Self.isLeaseLoss(error) {
                    throw error
                } catch {
                    logger.error("could not apply a dead letter; it will come again", metadata: ["task.id": "\(task.id)", "error": "\(error)"])
                    try? await delivery.reject(requeue: true)
                    try await Task.sleep(for: .seconds(1))
                }
            }
        }
    }

    /// True if the coordinator may act on `event`: it has no event key, or
    /// the event is signed with it. Otherwise the event is logged and counted.
    /// `counting` false: checked again (a batch applied one by one), already counted.
    private func isAuthentic(_ event: TaskEvent, counting: Bool = true) -> Bool {
        guard let verifier = configuration.eventVerifier, event.workflowRunID != nil else { return true }
        if verifier.verify(event) { return true }
        if counting { forged(event, why: event.signature == nil ? "unsigned" : "bad signature") }
        return false
    }

    private func forged(_ event: TaskEvent, why: String) {
        logger.warning("a step outcome that no worker signed was dropped", metadata: [
            "task.id": "\(event.taskID.prefix(300))", "run": "\(event.workflowRunID?.prefix(300) ?? "")", "kind": "\(event.kind.rawValue)",
            "why": "\(why)"])
        Counter(label: "sluice_coordinator_forged_events_total").increment()
        forgedCount.increment()
    }

    private func relayOutbox() async throws {
        var prepared: Set<String> = []
        while true {
            let entries = try await store.unsentOutbox(limit: configuration.outboxBatch)
            if entries.isEmpty {
                await wake.wait(upTo: configuration.pollInterval)
                continue
            }
            let queues = Set(entries.map { $0.task.queue ?? configuration.defaultQueue }).subtracting(prepared)
            if !queues.isEmpty {
                try await broker.prepare(queues: Array(queues))
                try await broker.watchDeadLetters(of: Array(queues))
                prepared.formUnion(queues)
            }
            // A task that can never be published (over an AMQP limit) fails
            // its step instead of holding its row, and the rows behind it, forever.
            var sendable: [OutboxEntry] = []
            var refused: [(OutboxEntry, DeadReason, String)] = []
            for entry in entries {
                do {
                    try envelope(entry.task).validateLimits()
                    sendable.append(entry)
                } catch {
                    refused.append((entry, .invalidEnvelope, error.message))
                }
            }
            let messages = sendable.map { broker.topology.message(for: envelope($0.task)) }
            let results = messages.isEmpty ? [] : try await broker.publish(messages)
            var sent: [Int64] = []
            var transientFailures = 0
            for (entry, result) in zip(sendable, results) {
                switch result {
                case .success: sent.append(entry.id)
                case .failure(let error) where WireLimits.isOverLimit(error):
                    refused.append((entry, .tooLarge, "\(error)"))
                case .failure(let error):
                    transientFailures += 1
                    logger.warning("a step task was not confirmed; it will be published again", metadata: [
                        "task.id": "\(entry.task.taskID)", "error": "\(error)"])
                }
            }
            for (entry, reason, message) in refused {
                try await failUnpublishable(entry, reason: reason, message: message)
                sent.append(entry.id)
            }
            try await store.markSent(sent)
            if transientFailures > 0 { try await Task.sleep(for: .seconds(1)) }
        }
    }

    /// Fails the step of a task that cannot be published, as if a worker had
    /// dead-lettered it with `reason`; the run then goes on by its rules.
    private func failUnpublishable(_ entry: OutboxEntry, reason: DeadReason, message: String) async throws {
        let task = envelope(entry.task)
        logger.error("a step task cannot be published; its step fails", metadata: [
            "task.id": "\(task.id.prefix(300))", "run": "\(entry.task.runID)", "reason": "\(reason.rawValue)", "error": "\(message)"])
        guard task.workflowRunID != nil else { return }
        var event = TaskEvent(kind: .dead, task: task)
        event.deadReason = reason
        event.errorType = reason.rawValue
        event.errorMessage = "the task could not be published: \(message)"
        try await engine.apply([event])
    }

    /// The task message for a step task.
    func envelope(_ task: StepTask) -> TaskEnvelope {
        // A scheduled standalone task has no run.
        let step = task.runID.isEmpty ? nil : (task.index.map { "\(task.stepID)[\($0)]" } ?? task.stepID)
        var envelope = TaskEnvelope(id: task.taskID, name: task.name, queue: task.queue ?? configuration.defaultQueue,
                            arguments: task.arguments.jsonBytes, maxAttempts: task.maxAttempts, retryPolicy: task.retry,
                            workflowRunID: task.runID.isEmpty ? nil : task.runID, workflowStep: step,
                            traceparent: task.traceparent.flatMap(TraceParent.init)?.child(seed: task.taskID).description)
        if let signer = configuration.eventVerifier, !task.runID.isEmpty {
            // Workers with the key run only step tasks signed here.
            envelope.stepSignature = signer.stepSignature(taskID: task.taskID, runID: task.runID, step: step)
        }
        return envelope
    }

    private func fireTimers() async throws {
        var orphans: Set<String> = []
        while true {
            let due = try await store.dueTimers(now: Date(), limit: 200).filter { !orphans.contains($0.id) }
            var fired = 0
            for timer in due {
                do {
                    if try await engine.fire(timer) {
                        fired += 1
                    } else {
                        // Its run is gone (a hand-edited store): leave it, and do not spin on it.
                        orphans.insert(timer.id)
                        logger.warning("a timer of an unknown run is ignored", metadata: ["timer": "\(timer.id)", "run": "\(timer.runID)"])
                    }
                } catch is CancellationError {
                    throw CancellationError()
                } catch where Self.isLeaseLoss(error) {
                    throw error
                } catch {
                    logger.error("a timer could not fire; it will be tried again", metadata: ["timer": "\(timer.id)", "error": "\(error)"])
                }
            }
            if fired > 0 {
                wake.signal()
                continue
            }
            if !due.isEmpty {
                try await Task.sleep(for: configuration.pollInterval)
                continue
            }
            var wait = configuration.pollInterval
            if orphans.isEmpty, let next = try await store.nextTimerDue() {
                let until = next.timeIntervalSinceNow
                if until < wait.timeInterval {
                    wait = .milliseconds(max(1, Int(until * 1000)))
                }
            }
            try await Task.sleep(for: wait)
        }
    }

    private func fireSchedules() async throws {
        while true {
            let now = Date()
            var soonest = now.addingTimeInterval(Double(configuration.pollInterval.components.seconds) + 0.25)
            for record in try await store.schedules() {
                guard record.nextFireAt <= now else {
                    soonest = min(soonest, record.nextFireAt)
                    continue
                }
                let spec: ScheduleSpec
                do {
                    spec = try StoreCoding.decode(ScheduleSpec.self, record.spec)
                } catch {
                    logger.error("a stored schedule cannot be read; it is skipped", metadata: ["schedule": "\(record.id)", "error": "\(error)"])
                    continue
                }
                do {
                    // The next time after now: missed times in between are not fired again.
                    let next = try spec.nextFire(after: max(now, record.nextFireAt))
                    let late = now.timeIntervalSince(record.nextFireAt)
                    if spec.misfire == .skip && late > 60 {
                        logger.warning("a schedule fire was missed and skipped", metadata: ["schedule": "\(spec.id)", "late": "\(Int(late)) s"])
                        _ = try await store.fireSchedule(id: spec.id, expected: record.nextFireAt, next: next, changes: [], publish: [])
                    } else if try await engine.fire(schedule: spec, expected: record.nextFireAt, next: next,
                                                    defaultQueue: configuration.defaultQueue) {
                        logger.info("schedule fired", metadata: ["schedule": "\(spec.id)", "next": "\(next)"])
                        wake.signal()
                    }
                } catch where Self.isLeaseLoss(error) || error is CancellationError {
                    throw error
                } catch {
                    logger.error("a schedule could not fire", metadata: ["schedule": "\(spec.id)", "error": "\(error)"])
                }
            }
            let wait = max(0.01, soonest.timeIntervalSinceNow)
            try await Task.sleep(for: .milliseconds(Int(wait * 1000)))
        }
    }

    /// Deletes finished runs older than `retention`, in batches, at start and
    /// then every quarter of it (at least every second, at most every 10 minutes).
    private func pruneRuns(keeping retention: Duration) async throws {
        let every = min(max(retention / 4, .seconds(1)), .seconds(600))
        let pruned = Counter(label: "sluice_workflow_runs_pruned_total")
        while true {
            do {
                var total = 0
                while true {
                    let cutoff = Date().addingTimeInterval(-retention.timeInterval)
                    let count = try await engine.pruneRuns(finishedBefore: cutoff, limit: 500)
                    total += count
                    if count < 500 { break }
                }
                if total > 0 {
                    pruned.increment(by: total)
                    logger.info("deleted finished runs past their retention", metadata: ["count": "\(total)", "retention": "\(retention)"])
                }
            } catch where Self.isLeaseLoss(error) || error is CancellationError {
                throw error
            } catch {
                logger.warning("could not delete old runs; trying again later", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: every)
        }
    }

    /// Tells the outbox relay that there may be rows to publish (after a command).
    public func outboxChanged() { wake.signal() }
}

/// A wake-up for the outbox relay: a signal while nobody waits is kept for the next wait.
final class Wake: Sendable {
    private let state = Mutex<(pending: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func signal() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            s.pending = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns at the next signal, or after `timeout`.
    func wait(upTo timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let now = self.state.withLock { s -> Bool in
                        if s.pending {
                            s.pending = false
                            return true
                        }
                        s.waiter = continuation
                        return false
                    }
                    if now { continuation.resume() }
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
            // Release the continuation if the timeout won.
            let waiter = self.state.withLock { s -> CheckedContinuation<Void, Never>? in
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume()
        }
    }
}

/// Deliveries received and not yet applied; `take` returns all of them (up to a limit) at once.
final class DeliveryBuffer: Sendable {
    private struct State {
        var items: [BrokerDelivery] = []
        var finished = false
        var error: (any Error)?
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    func push(_ delivery: BrokerDelivery) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.items.append(delivery)
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    func finish(_ error: (any Error)?) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.finished = true
            s.error = error
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    /// Waits for at least one delivery; nil when the consumer ended (throws its error, if any).
    func take(max: Int) async throws -> [BrokerDelivery]? {
        while true {
            try Task.checkCancellation()
            let result = state.withLock { s -> (batch: [BrokerDelivery]?, done: Bool, error: (any Error)?) in
                if !s.items.isEmpty {
                    let n = min(max, s.items.count)
                    let batch = Array(s.items.prefix(n))
                    s.items.removeFirst(n)
                    return (batch, false, nil)
                }
                return (nil, s.finished, s.error)
            }
            if let batch = result.batch { return batch }
            if result.done {
                if let error = result.error { throw error }
                return nil
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = state.withLock { s -> Bool in
                        if !s.items.isEmpty || s.finished { return true }
                        s.waiter = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            } onCancel: {
                let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
                    defer { s.waiter = nil }
                    return s.waiter
                }
                waiter?.resume()
            }
        }
    }
}

/// Whether the coordinator leads, and under which lease holder name.
/// A count shared by the copies of a value type.
final class SharedCounter: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func increment() { count.withLock { $0 += 1 } }
}

final class ActiveFlag: Sendable {
    private let state = Mutex<(holder: String?, last: String?)>((nil, nil))
    var value: Bool { state.withLock { $0.holder != nil } }
    /// The holder name of the current or latest term, or the one being asked
    /// for (for releasing the lease at shutdown).
    var lastHolder: String? { state.withLock { $0.last } }
    func set(_ holder: String?) {
        state.withLock {
            $0.holder = holder
            if let holder { $0.last = holder }
        }
    }
    func setCandidate(_ holder: String) { state.withLock { $0.last = holder } }
}
