import DequeModule
public import SluiceWire

/// A broker in memory, for unit tests of producers and workers.
///
/// It routes like the RabbitMQ topology: the tasks exchange to work queues,
/// the dead exchange to dead queues, delay exchanges back to the tasks
/// exchange after the tier's time. Events are kept in ``events``. Prefetch,
/// redelivery counts, requeue and dead-lettering on reject behave like a
/// quorum queue's; a closed consumer's unacknowledged deliveries go back to
/// their queue (a cancelled one's can still be acknowledged); durability and
/// the network do not exist here.
public actor InMemoryBroker: Broker {
    public nonisolated let topology: Topology

    fileprivate struct Stored {
        var message: OutboundMessage
        var deliveryCount: Int
    }

    private struct Consumer {
        var prefetch: Int
        /// Delivered, not yet acknowledged or rejected, by delivery tag.
        var unacked: [Int: Stored] = [:]
        var nextTag = 0
        var continuation: AsyncThrowingStream<BrokerDelivery, any Error>.Continuation
    }

    private struct Queue {
        var ready = Deque<Stored>()
        var consumers: [Int: Consumer] = [:]
        var order: [Int] = []
        var next = 0
    }

    private var queues: [String: Queue] = [:]
    private var nextConsumerID = 0
    /// Every event published, in order.
    public private(set) var events: [TaskEvent] = []
    /// Other messages published to the events exchange (heartbeats...).
    public private(set) var otherEventMessages: [OutboundMessage] = []
    private var eventWaiters: [(id: Int, ready: @Sendable ([TaskEvent]) -> Bool, continuation: CheckedContinuation<Bool, Never>)] = []
    private var nextWaiterID = 0
    /// The coordinator queues' bindings on the events exchange, by queue.
    private var coordinatorBindings: [String: [String]] = [:]
    /// The revocation stream's entries (nil until declared) and its readers.
    private var revocationLog: [OutboundMessage]?
    private var revocationFollowers: [Int: AsyncThrowingStream<BrokerDelivery, any Error>.Continuation] = [:]
    private var subscribers: [Int: (bindings: [String], continuation: AsyncThrowingStream<BrokerDelivery, any Error>.Continuation)] = [:]
    /// Unique lock and holder queues, by name: their window, and the
    /// message they hold with when it expires.
    private struct UniqueQueue {
        var window: Duration
        var message: (body: [UInt8], expires: ContinuousClock.Instant)?
    }
    private var uniqueQueues: [String: UniqueQueue] = [:]
    /// Queues whose ordered exchange and partitions exist.
    private var orderedQueues: Set<String> = []

    /// While set (``holdPlainPacks()``), plain tasks' single outcome events
    /// nobody subscribed to come back unroutable, as from RabbitMQ with no
    /// queue bound, and publishes of their packs wait in `heldPacks`.
    private var holdingPlainPacks = false
    /// Each held pack publish, resumed with whether to refuse it.
    private var heldPacks: [CheckedContinuation<Bool, Never>] = []
    /// Single outcome events answered unroutable while holding.
    public private(set) var unroutedOutcomeEvents = 0

    public init(topology: Topology) {
        self.topology = topology
    }

    /// For tests of outcome packs: from now on a plain task's single outcome
    /// event that no subscriber is bound to comes back unroutable (a worker
    /// then sends that key's outcomes in packs only), and a publish of a
    /// pack of plain tasks' outcomes waits until ``releasePlainPacks(refusing:)``,
    /// as an unconfirmed publish would.
    public func holdPlainPacks() {
        holdingPlainPacks = true
    }

    /// Lets the held pack publishes through (or refuses them, as a broker's
    /// nack would), and later ones at once.
    public func releasePlainPacks(refusing: Bool = false) {
        holdingPlainPacks = false
        let held = heldPacks
        heldPacks = []
        for publish in held { publish.resume(returning: refusing) }
    }

    /// Pack publishes waiting for ``releasePlainPacks(refusing:)``.
    public var heldPackCount: Int { heldPacks.count }

    /// Deliveries of a queue handed to consumers and not yet acknowledged or rejected.
    public func unackedCount(_ name: String) -> Int {
        queues[name]?.consumers.values.reduce(0) { $0 + $1.unacked.count } ?? 0
    }

    public func prepare(queues names: [String]) async throws {
        for name in names {
            try Topology.validateQueue(name)
            if queues[topology.workQueue(name)] == nil { queues[topology.workQueue(name)] = Queue() }
            let dead = topology.deadQueue(Topology.splitLevel(name).queue)
            if queues[dead] == nil { queues[dead] = Queue() }
        }
    }

    public func prepareOrdered(queues names: [String]) async throws {
        for name in names {
            try Topology.validateBaseQueue(name)
            orderedQueues.insert(name)
            for index in 0..<Topology.orderPartitionCount where queues[topology.orderPartitionQueue(name, index)] == nil {
                queues[topology.orderPartitionQueue(name, index)] = Queue()
            }
        }
    }

    public func prepareIsolation(queues names: [String]) async throws {
        for name in names where queues[topology.isolationQueue(name)] == nil { queues[topology.isolationQueue(name)] = Queue() }
    }

    public func prepareCoordinatorQueue(legacyEventBindings: Bool) async throws {
        coordinatorBindings[topology.coordinatorQueue] = topology.coordinatorBindings
            + (legacyEventBindings ? topology.legacyCoordinatorBindings : [])
        if queues[topology.coordinatorQueue] == nil { queues[topology.coordinatorQueue] = Queue() }
        if queues[topology.coordinatorDeadQueue] == nil { queues[topology.coordinatorDeadQueue] = Queue() }
    }

    public func preparePartitionQueue(_ partition: Int, of count: Int) async throws {
        let queue = topology.coordinatorQueue(partition: partition, of: count)
        coordinatorBindings[queue] = topology.coordinatorBindings(partition: partition, of: count)
        if queues[queue] == nil { queues[queue] = Queue() }
        if queues[topology.coordinatorDeadQueue] == nil { queues[topology.coordinatorDeadQueue] = Queue() }
    }

    public func prepareTrackingQueue() async throws {
        coordinatorBindings[topology.trackingQueue] = topology.trackingBindings
        if queues[topology.trackingQueue] == nil { queues[topology.trackingQueue] = Queue() }
    }

    /// Reply queues here never expire.
    public func prepareReplyQueue(_ name: String, expiresAfterMilliseconds: Int) async throws {
        if queues[name] == nil { queues[name] = Queue() }
    }

    /// Nothing to bind: this broker has no delivery limit, so no dead letter comes without a worker's reply.
    public func bindReplyQueue(_ name: String, toDeadLettersOf queues: [String]) async throws {}

    public func releaseReplyQueue(_ name: String) async {
        queues[name] = nil
    }

    /// Dead letters here are not copied (the in-memory broker has no delivery limit).
    public func watchDeadLetters(of queues: [String]) async throws {}

    public func publish(_ messages: [OutboundMessage]) async throws -> [Result<Void, any Error>] {
        if holdingPlainPacks, messages.contains(where: { $0.exchange == topology.eventsExchange && Topology.isPlainEventPackKey($0.routingKey) }) {
            if await withCheckedContinuation({ heldPacks.append($0) }) {
                return messages.map { _ in .failure(AMQPError(.publishNacked, operation: "publish", message: "refused by the test")) }
            }
        }
        return messages.map { route($0) }
    }

    private func route(_ message: OutboundMessage) -> Result<Void, any Error> {
        // The limits a RabbitMQ connection checks, with its default frame size.
        do { try MessageLimits.check(message, frameMax: 131_072) } catch { return .failure(error) }
        let t = topology
        switch message.exchange {
        case t.tasksExchange:
            return enqueue(message, into: t.workQueue(message.routingKey))
        case t.deadExchange:
            return enqueue(message, into: t.deadQueue(message.routingKey))
        case t.eventsExchange:
            var routed = false
            for subscriber in subscribers.values where subscriber.bindings.contains(where: { TopicPattern.matches($0, message.routingKey) }) {
                routed = true
                subscriber.continuation.yield(BrokerDelivery(properties: message.properties, body: message.body, redelivered: false,
                                                             deliveryCount: 0, routingKey: message.routingKey, acknowledger: NoAcknowledger()))
            }
            // As RabbitMQ would route it: by the coordinator queues' bindings.
            for (queue, bindings) in coordinatorBindings where bindings.contains(where: { TopicPattern.matches($0, message.routingKey) }) {
                routed = true
                _ = enqueue(message, into: queue)
            }
            // Unroutable as RabbitMQ answers it: a pack of plain tasks'
            // outcomes nobody is bound to, and (while holding) such a single
            // outcome event. Every other single event counts as heard here
            // (``events`` records it); packs are not recorded, their events are alone.
            let isPack = Topology.isPlainEventPackKey(message.routingKey)
            let heldBack = holdingPlainPacks && !routed && topology.plainEventPackRoutingKey(forEventKey: message.routingKey) != nil
            if (isPack && !routed) || heldBack {
                if heldBack { unroutedOutcomeEvents += 1 }
                return .failure(AMQPError(.unroutable, operation: "publish", message: "no queue is bound for \(message.routingKey)"))
            }
            if isPack { return .success(()) }
            // A pack counts as its events.
            let decoded = Topology.isEventPackKey(message.routingKey)
                ? (try? EventPack.decode(message.body)) : (try? TaskEvent.decode(message.body)).map { [$0] }
            if let decoded {
                events.append(contentsOf: decoded)
                let ready = eventWaiters.filter { $0.ready(events) }
                eventWaiters.removeAll { w in ready.contains { $0.id == w.id } }
                for w in ready { w.continuation.resume(returning: true) }
            } else {
                otherEventMessages.append(message)
            }
            return .success(())
        case t.uniqueExchange:
            // As the lock queue's arguments make RabbitMQ do: one message, a
            // second refused while the first lives; a holder queue keeps the newest.
            let name = message.routingKey
            guard let queue = uniqueQueues[name] else {
                return .failure(AMQPError(.unroutable, operation: "publish", message: "no queue \(name)"))
            }
            let now = ContinuousClock.now
            if t.isUniqueLockQueue(name), let held = queue.message, held.expires > now {
                return .failure(AMQPError(.publishNacked, operation: "publish", message: "the lock \(name) is held"))
            }
            uniqueQueues[name]!.message = (message.body, now + queue.window)
            return .success(())
        case t.revocationExchange:
            guard revocationLog != nil else { return .failure(AMQPError(.unroutable, operation: "publish", message: "no revocation stream")) }
            revocationLog!.append(message)
            for follower in revocationFollowers.values { follower.yield(Self.streamDelivery(message)) }
            return .success(())
        case "":
            return enqueue(message, into: message.routingKey)
        case t.isolationExchange:
            return enqueue(message, into: t.isolationQueue(message.routingKey))
        default:
            if message.exchange == t.orderedExchange {
                let queue = "\(t.prefix).order.\(message.routingKey)"
                guard let partition = t.orderPartition(fromQueue: queue), orderedQueues.contains(partition.queue) else {
                    return .failure(AMQPError(.unroutable, operation: "publish", message: "no partition \(message.routingKey)"))
                }
                return enqueue(message, into: queue)
            }
            if let tier = t.delayTiers.first(where: { t.delayExchange($0) == message.exchange }) {
                var back = message
                back.exchange = t.tasksExchange
                Task { [weak self] in
                    try? await Task.sleep(for: .milliseconds(tier))
                    await self?.routeLater(back)
                }
                return .success(())
            }
            return .failure(SluiceError(.enqueueFailed, "no exchange \(message.exchange)"))
        }
    }

    private func routeLater(_ message: OutboundMessage) { _ = route(message) }

    private func enqueue(_ message: OutboundMessage, into queue: String) -> Result<Void, any Error> {
        guard queues[queue] != nil else {
            // Like an unbound routing key: confirmed, and dropped.
            return .success(())
        }
        queues[queue]!.ready.append(Stored(message: message, deliveryCount: 0))
        dispatch(queue)
        return .success(())
    }

    private func dispatch(_ name: String) {
        guard var queue = queues[name] else { return }
        defer { queues[name] = queue }
        while !queue.ready.isEmpty, !queue.order.isEmpty {
            // Round-robin over consumers with free prefetch.
            var delivered = false
            for _ in 0..<queue.order.count {
                let id = queue.order[queue.next % queue.order.count]
                queue.next += 1
                guard var consumer = queue.consumers[id], consumer.unacked.count < consumer.prefetch else { continue }
                let stored = queue.ready.removeFirst()
                let tag = consumer.nextTag
                consumer.nextTag += 1
                consumer.unacked[tag] = stored
                queue.consumers[id] = consumer
                let ack = Acknowledger(broker: self, queue: name, consumer: id, tag: tag)
                var properties = stored.message.properties
                if stored.deliveryCount > 0 {
                    var headers = properties.headers ?? [:]
                    headers["x-delivery-count"] = .int64(Int64(stored.deliveryCount))
                    properties.headers = headers
                }
                consumer.continuation.yield(BrokerDelivery(
                    properties: properties, body: stored.message.body, redelivered: stored.deliveryCount > 0,
                    deliveryCount: stored.deliveryCount, routingKey: stored.message.routingKey, acknowledger: ack))
                delivered = true
                break
            }
            if !delivered { return }
        }
    }

    fileprivate func settle(queue name: String, consumer: Int, tag: Int, requeue: Bool?) throws {
        // Like an ack on a closed channel: the delivery went back to its queue when its consumer was cancelled.
        guard let stored = queues[name]?.consumers[consumer]?.unacked.removeValue(forKey: tag) else {
            throw SluiceError(.broker, "the delivery's consumer was closed; the message went back to \(name)", queue: name)
        }
        if queues[name]!.order.contains(consumer) == false, queues[name]!.consumers[consumer]!.unacked.isEmpty {
            queues[name]!.consumers[consumer] = nil  // cancelled, and now drained
        }
        switch requeue {
        case .none:
            break
        case .some(true):
            putBack(stored, into: name)
        case .some(false):
            if let q = queueName(name) { deadLetter(stored.message, queue: q, reason: .broker) }
        }
        dispatch(name)
    }

    /// Returns a delivery to the head of its queue, counting the delivery
    /// (dead-lettered past the delivery limit, as a quorum queue does).
    private func putBack(_ stored: Stored, into name: String) {
        var again = stored
        again.deliveryCount += 1
        if again.deliveryCount > topology.deliveryLimit, let q = queueName(name) {
            deadLetter(stored.message, queue: q, reason: .deliveryLimit)
        } else {
            queues[name]?.ready.prepend(again)
        }
    }

    private func queueName(_ brokerQueue: String) -> String? { topology.queueName(fromWorkQueue: brokerQueue) }

    /// `queue`: the work queue's name after the prefix, possibly one level
    /// (`emails~high`); every level dead-letters under its queue's name.
    private func deadLetter(_ message: OutboundMessage, queue: String, reason: DeadReason) {
        var dead = message
        dead.exchange = topology.deadExchange
        dead.routingKey = Topology.splitLevel(queue).queue
        var headers = dead.properties.headers ?? [:]
        let why = reason == .deliveryLimit ? "delivery_limit" : "rejected"
        headers["x-first-death-reason"] = .string(why)
        headers["x-death"] = .array([.table(["queue": .string(topology.workQueue(queue)), "reason": .string(why)])])
        dead.properties.headers = headers
        _ = route(dead)
    }

    public func consume(queue name: String, prefetch: Int) async throws -> BrokerConsumer {
        guard queues[name] != nil else { throw SluiceError(.notFound, "no queue \(name)", queue: name) }
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: BrokerDelivery.self)
        let id = nextConsumerID
        nextConsumerID += 1
        queues[name]!.consumers[id] = Consumer(prefetch: max(1, prefetch), continuation: continuation)
        queues[name]!.order.append(id)
        dispatch(name)
        return BrokerConsumer(stream, cancel: { [weak self] in await self?.cancel(queue: name, consumer: id) },
                              close: { [weak self] in await self?.close(queue: name, consumer: id) })
    }

    public func prepareUniqueLock(_ key: UniqueKey) async throws {
        let lock = topology.uniqueLockQueue(key)
        for name in [lock, topology.uniqueHolderQueue(ofLock: lock)] where uniqueQueues[name] == nil {
            uniqueQueues[name] = UniqueQueue(window: key.window)
        }
    }

    public func uniqueHolder(_ lockQueue: String) async throws -> String? {
        peek(topology.uniqueHolderQueue(ofLock: lockQueue))
    }

    public func peekUniqueLock(_ lockQueue: String) async throws -> String? {
        peek(lockQueue)
    }

    /// The body of a lock or holder queue's live message.
    private func peek(_ queue: String) -> String? {
        guard let held = uniqueQueues[queue]?.message, held.expires > .now else { return nil }
        return String(decoding: held.body, as: UTF8.self)
    }

    public func releaseUniqueLock(queue: String, taskID: String) async throws {
        guard topology.isUniqueLockQueue(queue) else {
            throw SluiceError(.invalidArgument, "\(queue) is not a unique lock queue of prefix \(topology.prefix)")
        }
        if let holder = peek(topology.uniqueHolderQueue(ofLock: queue)), holder != taskID { return }
        for name in [topology.uniqueHolderQueue(ofLock: queue), queue] { uniqueQueues[name]?.message = nil }
    }

    public func prepareRevocations() async throws {
        if revocationLog == nil { revocationLog = [] }
    }

    /// Like a stream: every follower reads every entry, from the first.
    public func followRevocations(prefetch: Int) async throws -> BrokerConsumer {
        guard let log = revocationLog else { throw SluiceError(.broker, "no revocation stream \(topology.revocationStream)") }
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: BrokerDelivery.self)
        for message in log { continuation.yield(Self.streamDelivery(message)) }
        let id = nextConsumerID
        nextConsumerID += 1
        revocationFollowers[id] = continuation
        return BrokerConsumer(stream: stream) { [weak self] in await self?.unfollow(id) }
    }

    private func unfollow(_ id: Int) {
        revocationFollowers.removeValue(forKey: id)?.finish()
    }

    private static func streamDelivery(_ message: OutboundMessage) -> BrokerDelivery {
        BrokerDelivery(properties: message.properties, body: message.body, redelivered: false, deliveryCount: 0,
                       routingKey: message.routingKey, acknowledger: NoAcknowledger())
    }

    public func subscribeEvents(bindings: [String]) async throws -> BrokerConsumer {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: BrokerDelivery.self)
        let id = nextConsumerID
        nextConsumerID += 1
        subscribers[id] = (bindings, continuation)
        return BrokerConsumer(stream: stream) { [weak self] in await self?.unsubscribe(id) }
    }

    /// Ends every event subscription with `error`, as a connection the
    /// broker closed for good would (tests of what a subscriber does then).
    public func failEventSubscriptions(_ error: any Error) {
        for (_, subscriber) in subscribers { subscriber.continuation.finish(throwing: error) }
        subscribers.removeAll()
    }

    private func unsubscribe(_ id: Int) {
        subscribers.removeValue(forKey: id)?.continuation.finish()
    }

    private struct NoAcknowledger: DeliveryAcknowledger {
        func ack() async throws {}
        func reject(requeue: Bool) async throws {}
    }

    /// No new deliveries; those delivered can still be acknowledged (basic.cancel).
    private func cancel(queue name: String, consumer id: Int) {
        guard let consumer = queues[name]?.consumers[id], queues[name]!.order.contains(id) else { return }
        queues[name]!.order.removeAll { $0 == id }
        consumer.continuation.finish()
        if consumer.unacked.isEmpty { queues[name]!.consumers[id] = nil }
    }

    /// Gives unacknowledged deliveries back to the queue (a channel closing).
    private func close(queue name: String, consumer id: Int) {
        guard let consumer = queues[name]?.consumers.removeValue(forKey: id) else { return }
        queues[name]!.order.removeAll { $0 == id }
        consumer.continuation.finish()
        // Back in the order they were delivered, ahead of what is ready.
        for tag in consumer.unacked.keys.sorted(by: >) { putBack(consumer.unacked[tag]!, into: name) }
        dispatch(name)
    }

    public func queueState(_ name: String) async throws -> QueueState {
        guard let queue = queues[name] else { throw SluiceError(.notFound, "no queue \(name)", queue: name) }
        return QueueState(name: name, messageCount: UInt32(queue.ready.count), consumerCount: UInt32(queue.order.count))
    }

    public func purge(_ name: String) async throws -> Int {
        let n = queues[name]?.ready.count ?? 0
        queues[name]?.ready.removeAll()
        return n
    }

    public func close() async {
        releasePlainPacks(refusing: true)
        for (_, subscriber) in subscribers { subscriber.continuation.finish() }
        subscribers.removeAll()
        for (name, queue) in queues {
            for consumer in queue.consumers.values { consumer.continuation.finish() }
            queues[name]?.consumers.removeAll()
            queues[name]?.order.removeAll()
        }
    }

    /// Returns true once `ready` holds for the events published so far, or
    /// false if the calling task is cancelled first.
    public func waitForEvents(_ ready: @escaping @Sendable ([TaskEvent]) -> Bool) async -> Bool {
        if ready(events) { return true }
        let id = nextWaiterID
        nextWaiterID += 1
        return await withTaskCancellationHandler {
            await withCheckedContinuation { eventWaiters.append((id, ready, $0)) }
        } onCancel: {
            Task { await self.dropWaiter(id) }
        }
    }

    private func dropWaiter(_ id: Int) {
        if let i = eventWaiters.firstIndex(where: { $0.id == id }) { eventWaiters.remove(at: i).continuation.resume(returning: false) }
    }

    /// The messages ready in a broker queue (for assertions).
    public func readyMessages(_ name: String) -> [OutboundMessage] {
        queues[name]?.ready.map(\.message) ?? []
    }

    private struct Acknowledger: DeliveryAcknowledger {
        let broker: InMemoryBroker
        let queue: String
        let consumer: Int
        let tag: Int

        func ack() async throws { try await broker.settle(queue: queue, consumer: consumer, tag: tag, requeue: nil) }
        func reject(requeue: Bool) async throws {
            try await broker.settle(queue: queue, consumer: consumer, tag: tag, requeue: requeue)
        }
    }
}
