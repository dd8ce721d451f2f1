public import SluiceWire

/// What producers and workers need from a message broker.
///
/// `SluiceRabbitMQ.RabbitMQBroker` implements it on RabbitMQ;
/// ``InMemoryBroker`` implements it in memory for unit tests. Names come from
/// ``Topology``; this protocol only moves messages.
public protocol Broker: Sendable {
    /// The names and arguments in use.
    var topology: Topology { get }

    /// Declares the shared exchanges, the delay ladder, and the work and dead
    /// queues of `queues` (idempotent).
    func prepare(queues: [String]) async throws

    /// Declares the isolation queues of `queues` (idempotent): see
    /// ``Topology/isolationQueue(_:)``.
    func prepareIsolation(queues: [String]) async throws

    /// Declares the ordered exchange and the partitions of each of `queues`
    /// (idempotent): see ``Topology/orderedExchange``.
    func prepareOrdered(queues: [String]) async throws

    /// Declares the coordinator's event queue and its bindings, and its
    /// dead-letter watch queue (idempotent). `legacyEventBindings`: also bind
    /// every task's outcome, as versions before step event keys did (for
    /// workers of such a version); without it those bindings are removed.
    func prepareCoordinatorQueue(legacyEventBindings: Bool) async throws

    /// Declares the event queue of one partition of `count` (several
    /// coordinators sharing a PostgreSQL store), binds it to its buckets'
    /// step outcomes and run messages, and declares the dead-letter watch queue.
    func preparePartitionQueue(_ partition: Int, of count: Int) async throws

    /// Declares the coordinator's queue of tracked tasks' events
    /// (``Topology/trackingQueue``) and binds it (idempotent).
    func prepareTrackingQueue() async throws

    /// Declares the revocation stream (``Topology/revocationStream``; idempotent).
    func prepareRevocations() async throws

    /// Reads the revocation stream from its first retained entry, then
    /// follows it (each delivery acknowledged by the reader). After a lost
    /// connection it reads again from the first entry.
    func followRevocations(prefetch: Int) async throws -> BrokerConsumer

    /// Declares a unique key's lock and holder queues (``Topology/uniqueLockQueue(_:)``)
    /// and their exchange (idempotent). Not declared again after a reconnect:
    /// they expire by themselves, and there may be many.
    func prepareUniqueLock(_ key: UniqueKey) async throws

    /// The task id in the holder queue beside `lockQueue`, read without
    /// taking it (nil: none, or no such queue).
    func uniqueHolder(_ lockQueue: String) async throws -> String?

    /// The task id in a lock queue itself, read without taking it (nil:
    /// none). Only for a producer that does not know whether its own lock
    /// publish went through: while it reads, the lock queue counts no
    /// message and would take a second lock.
    func peekUniqueLock(_ lockQueue: String) async throws -> String?

    /// Gives `taskID`'s lock back (``Topology/isUniqueLockQueue(_:)``):
    /// empties its holder queue, then the lock queue; nothing when the
    /// holder queue names another task, or when they do not exist.
    func releaseUniqueLock(queue: String, taskID: String) async throws

    /// Binds the coordinator's dead-letter watch queue to the dead letters of
    /// these task queues (idempotent).
    func watchDeadLetters(of queues: [String]) async throws

    /// Declares a producer's reply queue (``Topology/replyQueueDeclaration(_:expiresAfterMilliseconds:)``),
    /// where workers send the outcomes of the tasks it waits for (idempotent).
    func prepareReplyQueue(_ name: String, expiresAfterMilliseconds: Int) async throws

    /// Binds a reply queue to the dead letters of task queues (the dead
    /// exchange, routing key = queue), so that a producer also learns of
    /// the tasks RabbitMQ itself dead-letters at the delivery limit, which no
    /// worker lives to answer (idempotent).
    func bindReplyQueue(_ name: String, toDeadLettersOf queues: [String]) async throws

    /// Deletes a reply queue this process declared, and forgets it (it is
    /// not declared again after a reconnect). Never throws: a clean-up.
    func releaseReplyQueue(_ name: String) async

    /// Publishes messages and returns, per message, whether the broker
    /// confirmed it. Returns only when every one is settled.
    func publish(_ messages: [OutboundMessage]) async throws -> [Result<Void, any Error>]

    /// Publishes the outcome of a delivery; nothing once its connection is
    /// lost (see the extension's default).
    func publish(_ messages: [OutboundMessage], settling delivery: BrokerDelivery) async throws -> [Result<Void, any Error>]

    /// Starts consuming a broker queue (a full name from ``Topology``) with at
    /// most `prefetch` unacknowledged deliveries.
    func consume(queue: String, prefetch: Int) async throws -> BrokerConsumer

    /// Reads messages published to the events exchange under any of
    /// `bindings` (topic patterns) through a temporary queue that lives as
    /// long as this connection or the consumer. Monitoring and worker pings
    /// use it; it never takes messages from anyone else's queue.
    func subscribeEvents(bindings: [String]) async throws -> BrokerConsumer

    /// Ready messages and consumers of a broker queue, without changing it.
    func queueState(_ queue: String) async throws -> QueueState

    /// Removes every ready message from a broker queue; returns how many.
    func purge(_ queue: String) async throws -> Int

    /// Closes connections.
    func close() async
}

extension Broker {
    /// Publishes one message; throws if the broker did not confirm it.
    public func publish(_ message: OutboundMessage) async throws {
        try await publish([message])[0].get()
    }

    /// Publishes the outcome of `delivery` (its event, retry or dead copy):
    /// as ``publish(_:)-([OutboundMessage])``, but throws `staleDelivery` instead
    /// of publishing once the connection that delivered it is lost (it comes
    /// again, and runs again). Brokers that can tell it on their connection's
    /// thread do so (RabbitMQ); this default checks before publishing.
    public func publish(_ messages: [OutboundMessage], settling delivery: BrokerDelivery) async throws -> [Result<Void, any Error>] {
        if delivery.isStale { throw PublishFailure.staleOutcome }
        return try await publish(messages)
    }
}

/// A running consumer: deliveries, and a way to stop them.
public struct BrokerConsumer: AsyncSequence, Sendable {
    public typealias Element = BrokerDelivery
    private let makeIterator: @Sendable () -> Iterator
    private let cancelBody: @Sendable () async throws -> Void
    private let closeBody: (@Sendable () async -> Void)?

    /// A consumer from a stream and a cancel action.
    public init(stream: AsyncThrowingStream<BrokerDelivery, any Error>, cancel: @escaping @Sendable () async throws -> Void) {
        self.init(stream, cancel: cancel)
    }

    /// A consumer reading any sequence of deliveries directly (no task or
    /// stream in between, which would cost a hand-over per delivery).
    /// `close`, if given, also hands unacknowledged deliveries back (see ``close()``).
    public init<Base: AsyncSequence & Sendable>(_ base: Base, cancel: @escaping @Sendable () async throws -> Void,
                                                close: (@Sendable () async -> Void)? = nil)
    where Base.Element == BrokerDelivery {
        self.makeIterator = { Iterator(base.makeAsyncIterator()) }
        self.cancelBody = cancel
        self.closeBody = close
    }

    /// A consumer whose iterators each read through a function `makeNext`
    /// makes: the cheapest way in for a broker that has a non-generic
    /// reader of its own (no generic sequence or iterator box in between,
    /// whose unspecialized calls look up type metadata per delivery).
    public init(makeNext: @escaping @Sendable () -> () async throws -> BrokerDelivery?,
                cancel: @escaping @Sendable () async throws -> Void, close: (@Sendable () async -> Void)? = nil) {
        self.makeIterator = { Iterator(next: makeNext()) }
        self.cancelBody = cancel
        self.closeBody = close
    }

    public func makeAsyncIterator() -> Iterator { makeIterator() }

    /// Stops new deliveries; the sequence ends after those already received,
    /// which can still be acknowledged (a draining worker does that).
    public func cancel() async throws { try await cancelBody() }

    /// Stops deliveries and gives up those not acknowledged yet: the broker
    /// delivers them again to another consumer (RabbitMQ: the channel closes).
    /// Brokers without a way to do that just cancel. Never throws: it is
    /// meant for clean-up paths.
    public func close() async {
        if let closeBody { await closeBody() } else { try? await cancelBody() }
    }

    /// Reads the underlying sequence's iterator (one reader, as for any iterator).
    public struct Iterator: AsyncIteratorProtocol {
        private let nextBody: () async throws -> BrokerDelivery?

        init<Base: AsyncIteratorProtocol>(_ base: Base) where Base.Element == BrokerDelivery {
            let box = IteratorBox(base)
            nextBody = { try await box.next() }
        }

        init(next: @escaping () async throws -> BrokerDelivery?) {
            nextBody = next
        }

        public mutating func next() async throws -> BrokerDelivery? { try await nextBody() }
    }

    private final class IteratorBox<Base: AsyncIteratorProtocol> {
        var base: Base
        init(_ base: Base) { self.base = base }
        func next() async throws -> Base.Element? { try await base.next() }
    }
}

/// Settles one delivery.
public protocol DeliveryAcknowledger: Sendable {
    func ack() async throws
    /// Back to the queue (`requeue`) or to the queue's dead-letter exchange.
    func reject(requeue: Bool) async throws
    /// Whether the delivery came on a connection since lost (the broker
    /// delivers it again; it must not run here).
    var isStale: Bool { get }
}

extension DeliveryAcknowledger {
    public var isStale: Bool { false }
}

/// One message received from a broker queue.
public struct BrokerDelivery: Sendable {
    public var properties: BasicProperties
    public var body: [UInt8]
    public var redelivered: Bool
    /// How often the broker delivered it before (quorum queues' `x-delivery-count`).
    public var deliveryCount: Int
    public var routingKey: String
    public let acknowledger: any DeliveryAcknowledger

    public init(properties: BasicProperties, body: [UInt8], redelivered: Bool, deliveryCount: Int, routingKey: String,
                acknowledger: any DeliveryAcknowledger) {
        self.properties = properties
        self.body = body
        self.redelivered = redelivered
        self.deliveryCount = deliveryCount
        self.routingKey = routingKey
        self.acknowledger = acknowledger
    }

    public func ack() async throws { try await acknowledger.ack() }
    public func reject(requeue: Bool) async throws { try await acknowledger.reject(requeue: requeue) }
    /// See ``DeliveryAcknowledger/isStale``.
    public var isStale: Bool { acknowledger.isStale }
}
