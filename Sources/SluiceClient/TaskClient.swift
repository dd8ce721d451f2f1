import Foundation
public import SluiceCore
import SluiceWire
import Synchronization

/// Enqueues tasks. Every `enqueue` returns only after the broker confirmed the
/// persistent message, so a returned task id is never lost.
public final class TaskClient: Sendable {
    /// A task to enqueue as part of a batch.
    public struct Request: Sendable {
        public var name: String
        public var arguments: [UInt8]
        public var options: EnqueueOptions
        public init(name: String, arguments: [UInt8], options: EnqueueOptions) {
            self.name = name
            self.arguments = arguments
            self.options = options
        }
    }

    /// The broker it publishes through.
    public let broker: any Broker
    /// Queue used when neither the task nor the options name one.
    public let defaultQueue: String
    /// How long the reply queue outlives this client (RabbitMQ's `x-expires`:
    /// time without a consumer). A reconnect within it keeps the outcomes
    /// that arrived meanwhile.
    public let replyQueueExpiry: Duration
    /// This client's reply queue (`<prefix>.reply.<uuid>`): one name for
    /// the client's life, so that a listener made again (after its consumer
    /// ended) still receives the outcomes of tasks already sent.
    private let replyQueue: String
    /// Queues whose tasks are tracked unless ``EnqueueOptions/track`` says otherwise.
    public let trackedQueues: Set<String>
    /// Each queue's topology, declared once per client.
    private let prepared: DeclaredOnce
    /// Each queue's ordered exchange and partitions, declared once per client.
    private let preparedOrdered: DeclaredOnce
    /// The coordinator's tracking queue, tried once per client (see ``prepareTracking()``).
    private let trackingPrepared: DeclaredOnce
    /// Task queues whose dead letters the reply queue is bound to.
    private let deadLettersWatched = Mutex<Set<String>>([])
    /// The reply queue and its waiters, made at the first
    /// ``enqueueForResult(name:json:options:)`` (a task, so that callers
    /// arriving meanwhile wait for the same one).
    private let replies = Mutex<Task<ReplyListener, any Error>?>(nil)
    /// Unique keys' lock queues this client declared, each with when it
    /// must declare it again (see ``TaskClient/enqueueUnique(name:json:options:)``).
    let uniqueDeclared = Mutex<[String: ContinuousClock.Instant]>([:])
    /// Reads of a lock's holder in flight, by lock queue (shared by callers).
    let holderReads = Mutex<[String: Task<String?, any Error>]>([:])

    /// A client publishing through `broker`. Make one per process (or per
    /// broker connection) and keep it: each client that waits for results
    /// has a reply queue of its own.
    /// `trackedQueues`: queues (without level) whose tasks the coordinator
    /// tracks by default (see ``EnqueueOptions/track``).
    public init(broker: any Broker, defaultQueue: String = "default", replyQueueExpiry: Duration = .seconds(600),
                trackedQueues: Set<String> = []) {
        self.broker = broker
        self.trackedQueues = trackedQueues
        self.defaultQueue = defaultQueue
        self.replyQueueExpiry = replyQueueExpiry
        self.replyQueue = broker.topology.replyQueue(TaskEnvelope.newID())
        prepared = DeclaredOnce { try await broker.prepare(queues: $0) }
        preparedOrdered = DeclaredOnce { try await broker.prepareOrdered(queues: $0) }
        // An account that may not declare it relies on the coordinator having done so: not retried.
        trackingPrepared = DeclaredOnce { _ in try? await broker.prepareTrackingQueue() }
    }

    deinit {
        if let made = replies.withLock({ $0 }) {
            let broker = self.broker
            Task {
                guard let listener = try? await made.value else { return }
                await listener.stop()
                await broker.releaseReplyQueue(listener.queue)
            }
        }
    }

    /// Stops waiting for results: waits still open fail, the reply queue's
    /// consumer and channel close, and the queue is deleted (outcomes still
    /// on their way are dropped). Enqueueing still works; waiting for a
    /// result afterwards starts a new listener on the same queue.
    public func close() async {
        guard let made = replies.withLock({ slot -> Task<ReplyListener, any Error>? in
            defer { slot = nil }
            return slot
        }) else { return }
        guard let listener = try? await made.value else { return }
        await listener.stop()
        await broker.releaseReplyQueue(listener.queue)
    }

    /// Enqueues a typed task; returns its id once the broker confirmed it.
    @discardableResult
    public func enqueue<T: TaskDefinition>(_ task: T.Type, _ arguments: T.Arguments, options: EnqueueOptions = EnqueueOptions()) async throws -> String {
        var options = options
        let json = try Self.encode(task, arguments, into: &options)
        return try await enqueue(name: T.name, json: json, options: options)
    }

    /// Enqueues a task with raw JSON arguments; returns its id once confirmed.
    @discardableResult
    public func enqueue(name: String, json: [UInt8], options: EnqueueOptions = EnqueueOptions()) async throws -> String {
        try await enqueue(batch: [Request(name: name, arguments: json, options: options)])[0].get()
    }

    /// Enqueues many tasks pipelined under one confirm window; returns each
    /// one's id or error, in order. A task with a unique key whose lock is
    /// held returns the holder's id (such tasks go one at a time).
    public func enqueue(batch requests: [Request]) async throws -> [Result<String, SluiceError>] {
        guard requests.contains(where: { $0.options.unique != nil }) else { return try await enqueuePlain(batch: requests) }
        var results = [Result<String, SluiceError>?](repeating: nil, count: requests.count)
        let plain = requests.indices.filter { requests[$0].options.unique == nil }
        for (i, outcome) in zip(plain, try await enqueuePlain(batch: plain.map { requests[$0] })) { results[i] = outcome }
        for i in requests.indices where requests[i].options.unique != nil {
            do {
                results[i] = .success(try await enqueueUnique(requests[i]).id)
            } catch let error as SluiceError {
                results[i] = .failure(error)
            } catch {
                // Per item, whatever it is: the plain tasks are already out.
                results[i] = .failure(SluiceError(.enqueueFailed, "\(error)", task: requests[i].name, queue: requests[i].options.queue))
            }
        }
        return results.map { $0! }
    }

    /// ``enqueue(batch:)`` for tasks without a unique key.
    func enqueuePlain(batch requests: [Request]) async throws -> [Result<String, SluiceError>] {
        var results = [Result<String, SluiceError>?](repeating: nil, count: requests.count)
        var encoded: [(index: Int, task: EncodedTask)] = []
        let now = Date()
        for (i, request) in requests.enumerated() {
            do {
                encoded.append((i, try encode(request, now: now)))
            } catch let error as SluiceError {
                results[i] = .failure(error)
            }
        }
        let outcomes = try await send(encoded.map(\.task), now: now)
        for ((index, task), outcome) in zip(encoded, outcomes) {
            results[index] = outcome.map { task.envelope.id }.mapError {
                SluiceError(.enqueueFailed, "the broker did not confirm the task: \($0)", task: task.envelope.name, queue: task.envelope.queue)
            }
        }
        return results.map { $0! }
    }

    /// A task ready to go: its envelope and the message it is sent as.
    struct EncodedTask {
        var envelope: TaskEnvelope
        var message: OutboundMessage
    }

    /// A request's task, encoded once, its limits checked on the message
    /// that is sent.
    func encode(_ request: Request, now: Date) throws -> EncodedTask {
        let envelope = try envelope(for: request, now: now)
        let message = broker.topology.message(for: envelope, now: now)
        try envelope.validateLimits(encodedAs: message.properties)
        return EncodedTask(envelope: envelope, message: message)
    }

    /// Publishes tasks (their queues declared once per client) and returns
    /// each one's outcome; then the `queued` events of tracked ones the
    /// broker took.
    func send(_ tasks: [EncodedTask], now: Date) async throws -> [Result<Void, any Error>] {
        try await prepare(Set(tasks.map { Topology.levelName($0.envelope.queue, $0.envelope.priority) }))
        let ordered = Set(tasks.compactMap { $0.envelope.orderKey == nil ? nil : $0.envelope.queue })
        if !ordered.isEmpty { try await prepareOrdered(ordered) }
        if tasks.contains(where: \.envelope.track) { await prepareTracking() }
        let outcomes = try await broker.publish(tasks.map(\.message))
        // A tracked task's `queued` event follows its confirm, apart: its fate
        // does not decide the enqueue's (an account without the right to
        // publish it has its channel closed; the coordinator may not have
        // made its queue yet). The tracker takes a late `queued` too.
        let queuedEvents = zip(tasks, outcomes).compactMap { task, outcome -> OutboundMessage? in
            guard task.envelope.track, case .success = outcome else { return nil }
            return broker.topology.eventMessage(TaskEvent(kind: .queued, task: task.envelope, at: now))
        }
        if !queuedEvents.isEmpty { _ = try? await broker.publish(queuedEvents) }
        return outcomes
    }

    // MARK: Results

    /// Enqueues a typed task whose final outcome this client waits for:
    /// the workers send it to this client's reply queue. Returns once the
    /// broker confirmed the task; ``TaskHandle/result(timeout:)`` waits.
    public func enqueueForResult<T: TaskDefinition>(_ task: T.Type, _ arguments: T.Arguments,
                                                    options: EnqueueOptions = EnqueueOptions()) async throws -> TaskHandle {
        var options = options
        let json = try Self.encode(task, arguments, into: &options)
        return try await enqueueForResult(name: T.name, json: json, options: options)
    }

    /// Enqueues a task with raw JSON arguments whose final outcome this
    /// client waits for (see ``enqueueForResult(_:_:options:)``).
    public func enqueueForResult(name: String, json: [UInt8], options: EnqueueOptions = EnqueueOptions()) async throws -> TaskHandle {
        guard options.unique == nil else {
            // A duplicate's outcome would go to whoever enqueued the holder.
            throw SluiceError(.invalidArgument, "a task with a unique key cannot be waited for: enqueue it with enqueueUnique", task: name,
                              queue: options.queue)
        }
        var options = options
        let listener = try await replyListener(until: nil)
        options.replyTo = listener.queue
        // Before the task goes: a task RabbitMQ dead-letters at the delivery
        // limit (it killed every worker that took it) is answered by no worker;
        // its dead letter, copied to the reply queue, tells the listener.
        // Dead letters come under the queue's name whatever the level.
        let queue = Topology.splitLevel(options.queue ?? defaultQueue).queue
        if !deadLettersWatched.withLock({ $0.contains(queue) }), Topology.isValidName(queue) {
            try await prepare([queue])
            try await broker.bindReplyQueue(listener.queue, toDeadLettersOf: [queue])
            deadLettersWatched.withLock { _ = $0.insert(queue) }
        }
        return TaskHandle(id: try await enqueue(name: name, json: json, options: options), client: self)
    }

    /// The final outcome of a task this client enqueued with
    /// ``enqueueForResult(name:json:options:)``: its result, or ``TaskFailed``
    /// when it ended dead. Throws `SluiceError` `timed_out` after `timeout`
    /// (which also bounds setting up the reply queue's consumer, the first
    /// time); never waits longer. An outcome that came before anyone asked
    /// is kept until asked for once (the newest 10,000); a second call for
    /// the same task waits for another outcome.
    public func result(of id: String, timeout: Duration = .seconds(60)) async throws -> TaskResult {
        let deadline = ContinuousClock.now + timeout
        let listener = try await replyListener(until: deadline)
        let left = deadline - ContinuousClock.now
        return try await listener.wait(for: id, timeout: left > .zero ? left : .zero).outcome().get()
    }

    /// This client's reply queue, declared and consumed from the first
    /// call on. Set it as `reply_to` on a task published by other means
    /// (with a `message_id`) to wait for it with ``result(of:timeout:)``.
    public func replyAddress() async throws -> String {
        try await replyListener(until: nil).queue
    }

    /// This client's reply listener, declared and consuming; made again if
    /// the last one's consumer ended (its queue deleted, ``close()``).
    /// Waiting for it follows the caller's cancellation and `deadline`
    /// without cancelling the set-up other callers share.
    private func replyListener(until deadline: ContinuousClock.Instant?) async throws -> ReplyListener {
        for _ in 0..<2 {
            let making = replies.withLock { slot -> Task<ReplyListener, any Error> in
                if let slot { return slot }
                let made = Task { try await self.makeReplyListener() }
                slot = made
                return made
            }
            do {
                let listener = try await value(of: making, until: deadline, what: "the reply queue's consumer")
                if !listener.hasEnded { return listener }
                replies.withLock { if $0 == making { $0 = nil } }
            } catch let error as SluiceError where error.code == .timedOut {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                replies.withLock { if $0 == making { $0 = nil } }
                throw error
            }
        }
        throw SluiceError(.broker, "the reply queue's consumer ended at once, twice")
    }

    private func makeReplyListener() async throws -> ReplyListener {
        let (seconds, attoseconds) = replyQueueExpiry.components
        let milliseconds = seconds > Int64(Int32.max) ? Int(Int32.max) : Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
        try await broker.prepareReplyQueue(replyQueue, expiresAfterMilliseconds: milliseconds)
        let listener = ReplyListener(queue: replyQueue, topology: broker.topology)
        // A new listener's queue may be new too (expired, deleted by close()): bind again.
        deadLettersWatched.withLock { $0 = [] }
        listener.start(try await broker.consume(queue: replyQueue, prefetch: 256))
        return listener
    }

    // MARK: Encoding

    /// A typed task's arguments as JSON; its default queue unless the options name one.
    private static func encode<T: TaskDefinition>(_ task: T.Type, _ arguments: T.Arguments,
                                                  into options: inout EnqueueOptions) throws -> [UInt8] {
        if options.queue == nil { options.queue = T.queue }
        do {
            return Array(try JSONEncoder().encode(arguments))
        } catch {
            throw SluiceError(.encodingFailed, "arguments could not be encoded as JSON: \(error)", task: T.name, queue: options.queue)
        }
    }

    func envelope(for request: Request, now: Date) throws -> TaskEnvelope {
        let o = request.options
        let named = o.queue ?? defaultQueue
        do { try Topology.validateQueue(named) } catch var error as SluiceError {
            error.task = request.name
            throw error
        }
        // A queue may be named at a level (`emails~high`); an explicit priority wins.
        let (queue, level) = Topology.splitLevel(named)
        let priority = o.priority ?? level ?? .normal
        guard TaskEnvelope.isValidJSON(request.arguments) else {
            throw SluiceError(.invalidArgument, "the arguments are not valid JSON", task: request.name, queue: queue)
        }
        if let m = o.maxAttempts, m < 1 {
            throw SluiceError(.invalidArgument, "max attempts must be 1 or more", task: request.name, queue: queue)
        }
        if let replyTo = o.replyTo, !broker.topology.isReplyQueue(replyTo) {
            throw SluiceError(.invalidArgument, "reply address '\(replyTo)' is not a reply queue of this prefix "
                              + "(\(broker.topology.replyQueue("<1-64 letters, digits, - or _>")))", task: request.name, queue: queue)
        }
        var notBefore = o.notBefore
        if notBefore == nil, let delay = o.delay, delay > .zero {
            let (s, atto) = delay.components
            notBefore = now.addingTimeInterval(Double(s) + Double(atto) / 1e18)
        }
        let id = o.id ?? TaskEnvelope.newID()
        var envelope = TaskEnvelope(
            id: id, name: request.name, queue: queue, arguments: request.arguments,
            // The retry header carries backoff only: the policy's attempt limit travels as max attempts.
            maxAttempts: o.maxAttempts ?? o.retryPolicy?.maxAttempts, retryPolicy: o.retryPolicy, notBefore: notBefore, deadline: o.deadline,
            idempotencyKey: o.idempotencyKey, workflowRunID: o.workflowRunID, workflowStep: o.workflowStep,
            traceparent: o.traceparent ?? TraceParent.current?.child(seed: id).description, enqueuedAt: now, replyTo: o.replyTo,
            priority: priority, track: o.track ?? trackedQueues.contains(queue))
        if let unique = o.unique {
            do { try unique.validate() } catch var error {
                error.task = request.name
                error.queue = queue
                throw error
            }
            // The worker that finishes it gives the lock back, while it surely
            // is this task's: the lock is published after `now`, so it expires
            // later than this says.
            if unique.policy == .untilFinished {
                let ticket = UniqueLockTicket(queue: broker.topology.uniqueLockQueue(unique),
                                              expiresAt: now.addingTimeInterval(unique.window.timeInterval))
                envelope.otherHeaders[WireHeader.uniqueLock] = .string(ticket.headerValue)
            }
        }
        if let orderKey = o.orderKey {
            do throws(SluiceError) { try Topology.validateOrderKey(orderKey) } catch {
                throw SluiceError(.invalidArgument, error.message, task: request.name, queue: queue)
            }
            guard notBefore == nil else {
                throw SluiceError(.invalidArgument, "an ordered task cannot be delayed: it would lose its place behind its key's earlier tasks",
                                  task: request.name, queue: queue)
            }
            guard priority == .normal else {
                throw SluiceError(.invalidArgument, "an ordered task has no priority level: its key's partition runs its tasks in enqueue order",
                                  task: request.name, queue: queue)
            }
            envelope.orderKey = orderKey
        }
        // Every AMQP limit is checked where the task enters (`enqueue(batch:)`,
        // on its encoded message), with an error naming the field: never
        // later, as a failed publish or a retry copy that cannot be sent.
        return envelope
    }

    /// Declares the coordinator's tracking queue once per client, so that
    /// tracked tasks' events wait there for a coordinator that is not up
    /// yet. Tried once: an account that may not declare it relies on the
    /// coordinator (or `sluice topology export --coordinator`) having done so.
    func prepareTracking() async {
        try? await trackingPrepared.ensure(Self.trackingKey)
    }

    /// ``trackingPrepared``'s one key, made once (a set literal at each call would allocate).
    private static let trackingKey: Set<String> = ["tracking"]

    /// Declares each queue's ordered exchange and partitions once per client.
    func prepareOrdered(_ queues: Set<String>) async throws {
        try await preparedOrdered.ensure(queues)
    }

    /// Declares each queue's topology once per client.
    func prepare(_ queues: Set<String>) async throws {
        try await prepared.ensure(queues)
    }
}
