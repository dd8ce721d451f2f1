import DequeModule
import SluiceCore
import SluiceWire
import Synchronization

/// A producer's reply queue and the tasks waiting on it: workers send the
/// final outcome of each task enqueued with this queue as `reply_to`, and
/// ``wait(for:timeout:)`` hands it to whoever asks for that task id.
///
/// An outcome that arrives before anyone asks is kept until asked for (the
/// newest ``keptOutcomes``, at most ``keptBytes`` of results), so a caller
/// may enqueue, do other work, then ask. The first outcome of a task wins:
/// a task that ran twice may answer twice.
final class ReplyListener: Sendable {
    /// How many outcomes nobody asked for yet are kept, oldest dropped first.
    static let keptOutcomes = 10_000
    /// And how many bytes of their results, at most.
    static let keptBytes = 64 << 20

    /// The reply queue's broker name.
    let queue: String
    /// To read the dead letters bound to the queue.
    let topology: Topology

    fileprivate struct Waiter {
        var continuation: CheckedContinuation<TaskEvent, any Error>
        var timer: Task<Void, Never>?
    }

    fileprivate struct State {
        var waiters: [String: [Int: Waiter]] = [:]
        var arrived: [String: TaskEvent] = [:]
        var arrivalOrder = Deque<String>()
        var arrivedBytes = 0
        var nextToken = 0
        /// Why the listener stopped (its consumer ended); every wait fails with it.
        var ended: (any Error)?
        var consumer: BrokerConsumer?
        var consumerTask: Task<Void, Never>?
    }

    private let state = Mutex(State())

    init(queue: String, topology: Topology) {
        self.queue = queue
        self.topology = topology
    }

    /// How many callers wait for task `id` now (for tests).
    func waiting(for id: String) -> Int { state.withLock { $0.waiters[id]?.count ?? 0 } }

    /// Whether the consumer ended (a new listener is needed).
    var hasEnded: Bool { state.withLock { $0.ended != nil } }

    /// Consumes the reply queue until its consumer ends or ``stop()``.
    func start(_ consumer: BrokerConsumer) {
        let task = Task {
            do {
                for try await delivery in consumer {
                    if let event = outcome(of: delivery) { deliver(event) }
                    // Anything else is dropped: nobody could wait for it.
                    try? await delivery.ack()
                }
                end(SluiceError(.broker, "the reply queue's consumer ended"))
            } catch {
                end(SluiceError(.broker, "the reply queue's consumer failed: \(error)"))
            }
        }
        state.withLock {
            $0.consumer = consumer
            $0.consumerTask = task
        }
    }

    /// What a delivery on the reply queue says: a worker's reply (through the
    /// default exchange, so its routing key is this queue's name), or the
    /// dead letter of a task that named this queue as `reply_to` (through the
    /// dead exchange, routing key = the task's queue), whose body is the
    /// task's own and is never read as an outcome.
    func outcome(of delivery: BrokerDelivery) -> TaskEvent? {
        if delivery.routingKey == queue {
            guard let event = try? TaskEvent.decode(delivery.body), event.kind == .succeeded || event.kind == .dead else { return nil }
            return event
        }
        let properties = delivery.properties
        guard properties.replyTo == queue, let id = properties.messageId ?? properties.headers?[WireHeader.id]?.stringValue else { return nil }
        let headers = properties.headers ?? [:]
        let task = TaskEnvelope(id: id, name: properties.type ?? headers[WireHeader.task]?.stringValue ?? "", queue: delivery.routingKey,
                                arguments: [], attempt: headers[WireHeader.attempt]?.intValue ?? 1)
        var event = TaskEvent(kind: .dead, task: task)
        switch topology.deadLetterOrigin(headers) {
        case .deliveryLimit:
            event.deadReason = .deliveryLimit
            event.errorType = "delivery_limit"
            event.errorMessage = "RabbitMQ dead-lettered the task after its delivery limit: it kept crashing or hanging its workers"
        case .worker(let reason):
            event.deadReason = reason
            event.errorType = headers[WireHeader.errorType]?.stringValue
            event.errorMessage = headers[WireHeader.errorMessage]?.stringValue
        case .other(let why):
            event.deadReason = .broker
            event.errorMessage = why
        }
        return event
    }

    /// Stops consuming and closes the consumer's channel; waiting callers fail.
    func stop() async {
        let (consumer, task) = state.withLock { ($0.consumer, $0.consumerTask) }
        end(CancellationError())
        task?.cancel()
        await consumer?.close()
    }

    /// The outcome of task `id`: at once if it arrived, else when it does,
    /// or a `timed_out` error after `timeout`.
    func wait(for id: String, timeout: Duration) async throws -> TaskEvent {
        let token = state.withLock { s -> Int in
            s.nextToken += 1
            return s.nextToken
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<TaskEvent, any Error>) in
                let now: Result<TaskEvent, any Error>? = state.withLock { s in
                    if let event = s.take(id) { return .success(event) }
                    if let ended = s.ended { return .failure(ended) }
                    s.waiters[id, default: [:]][token] = Waiter(continuation: continuation)
                    return nil
                }
                if let now {
                    continuation.resume(with: now)
                    return
                }
                // Cancelled before the waiter was registered: onCancel found nothing to end.
                if Task.isCancelled {
                    fail(id, token, CancellationError())
                    return
                }
                let timer = Task {
                    guard (try? await Task.sleep(for: timeout)) != nil else { return }
                    self.fail(id, token, SluiceError(.timedOut, "no outcome of task \(id) within \(timeout)"))
                }
                let stillWaiting = state.withLock { s -> Bool in
                    guard s.waiters[id]?[token] != nil else { return false }
                    s.waiters[id]![token]!.timer = timer
                    return true
                }
                if !stillWaiting { timer.cancel() }
            }
        } onCancel: {
            self.fail(id, token, CancellationError())
        }
    }

    /// An outcome arrived: every caller waiting for it gets it; with nobody
    /// waiting it is kept for the first who asks. A later outcome of the same task is dropped.
    func deliver(_ event: TaskEvent) {
        let waiting = state.withLock { s -> [Waiter] in
            if let waiters = s.waiters.removeValue(forKey: event.taskID) { return Array(waiters.values) }
            s.keep(event)
            return []
        }
        for waiter in waiting {
            waiter.timer?.cancel()
            waiter.continuation.resume(returning: event)
        }
    }

    private func fail(_ id: String, _ token: Int, _ error: any Error) {
        let waiter = state.withLock { s -> Waiter? in
            let w = s.waiters[id]?.removeValue(forKey: token)
            if s.waiters[id]?.isEmpty == true { s.waiters[id] = nil }
            return w
        }
        waiter?.timer?.cancel()
        waiter?.continuation.resume(throwing: error)
    }

    private func end(_ error: any Error) {
        let waiting = state.withLock { s -> [Waiter] in
            if s.ended == nil { s.ended = error }
            defer { s.waiters = [:] }
            return s.waiters.values.flatMap(\.values)
        }
        for waiter in waiting {
            waiter.timer?.cancel()
            waiter.continuation.resume(throwing: error)
        }
    }
}

extension ReplyListener.State {
    /// Takes a kept outcome (asked for once, it is not kept any more).
    mutating func take(_ id: String) -> TaskEvent? {
        guard let event = arrived.removeValue(forKey: id) else { return nil }
        arrivedBytes -= Self.size(event)
        // Its id stays in arrivalOrder until it reaches the front: skipped then.
        return event
    }

    /// Keeps an outcome nobody waits for yet (the first of its task), within the limits.
    mutating func keep(_ event: TaskEvent) {
        guard arrived[event.taskID] == nil else { return }
        arrived[event.taskID] = event
        arrivedBytes += Self.size(event)
        arrivalOrder.append(event.taskID)
        while arrived.count > ReplyListener.keptOutcomes || arrivedBytes > ReplyListener.keptBytes
                || arrivalOrder.count > 2 * ReplyListener.keptOutcomes,
              let oldest = arrivalOrder.popFirst() {
            if let dropped = arrived.removeValue(forKey: oldest) { arrivedBytes -= Self.size(dropped) }
        }
    }

    static func size(_ event: TaskEvent) -> Int { (event.result?.utf8.count ?? 0) + (event.errorMessage?.utf8.count ?? 0) + 200 }
}
