import Logging
public import SluiceWire
import Synchronization

/// An AMQP channel: declares, publishes, consumes and acknowledges.
///
/// Every method hands its work to the connection's thread. On a confirm
/// channel (`openChannel(confirms: true)`), `publish` returns only once the
/// broker has acknowledged the message and throws if it refused it, could
/// not route a `mandatory` message, or the connection was lost first.
/// After a reconnect the channel is reopened with the same number, and calls
/// work again.
public final class AMQPChannel: Sendable {
    /// The connection this channel belongs to (kept open while the channel lives).
    public let connection: AMQPConnection
    let core: ConnectionCore
    let state: ChannelState
    private let consumerCounter = Mutex(0)

    init(connection: AMQPConnection, state: ChannelState) {
        self.connection = connection
        self.core = connection.core
        self.state = state
        let handle = self
        core.submit { _ in state.handle = handle }
    }

    deinit {
        let state = self.state
        core.submit { core in try? core.closeChannel(state) }
    }

    /// The channel number.
    public var id: UInt16 { state.id }
    /// Whether publishes wait for the broker's confirmation.
    public var confirms: Bool { state.confirms }

    // MARK: Topology

    /// Declares an exchange (idempotent with the same settings).
    public func exchangeDeclare(_ declaration: ExchangeDeclaration) async throws {
        let state = self.state
        try await core.call("exchange.declare \(declaration.name)") { core in
            try core.exchangeDeclare(state, declaration, passive: false)
        }
    }

    /// Checks that an exchange exists; throws with reply code 404 if not (and the channel closes).
    public func exchangeDeclarePassive(_ name: String) async throws {
        let state = self.state
        try await core.call("exchange.declare passive \(name)") { core in
            try core.exchangeDeclare(state, ExchangeDeclaration(name: name), passive: true)
        }
    }

    /// Deletes an exchange.
    public func exchangeDelete(_ name: String, ifUnused: Bool = false) async throws {
        let state = self.state
        try await core.call("exchange.delete \(name)") { core in try core.exchangeDelete(state, name, ifUnused: ifUnused) }
    }

    /// Declares a queue (idempotent with the same settings); returns its counts.
    ///
    /// `recorded`: declared again after a reconnect (the default). Queues
    /// that come and go by the thousand and expire by themselves (unique
    /// task locks) are not: a reconnect would bring back every one.
    @discardableResult
    public func queueDeclare(_ declaration: QueueDeclaration, recorded: Bool = true) async throws -> QueueState {
        let state = self.state
        return try await core.call("queue.declare \(declaration.name)") { core in
            try core.queueDeclare(state, declaration, passive: false, record: recorded)
        }
    }

    /// Reads a queue's message and consumer counts without changing it;
    /// throws with reply code 404 if it does not exist (and the channel closes).
    public func queueDeclarePassive(_ name: String) async throws -> QueueState {
        let state = self.state
        return try await core.call("queue.declare passive \(name)") { core in
            try core.queueDeclare(state, QueueDeclaration(name: name), passive: true)
        }
    }

    /// Binds a queue to an exchange.
    /// (`recorded`: bound again after a reconnect; see ``queueDeclare(_:recorded:)``.)
    public func queueBind(queue: String, exchange: String, routingKey: String, arguments: FieldTable = [:],
                          recorded: Bool = true) async throws {
        let state = self.state
        let binding = TopologyRecorder.Binding(queue: queue, exchange: exchange, routingKey: routingKey, arguments: arguments)
        try await core.call("queue.bind \(queue)") { core in try core.queueBind(state, binding, unbind: false, record: recorded) }
    }

    /// Removes a binding.
    public func queueUnbind(queue: String, exchange: String, routingKey: String, arguments: FieldTable = [:]) async throws {
        let state = self.state
        let binding = TopologyRecorder.Binding(queue: queue, exchange: exchange, routingKey: routingKey, arguments: arguments)
        try await core.call("queue.unbind \(queue)") { core in try core.queueBind(state, binding, unbind: true) }
    }

    /// Removes every ready message from a queue; returns how many.
    @discardableResult
    public func queuePurge(_ name: String) async throws -> UInt32 {
        let state = self.state
        return try await core.call("queue.purge \(name)") { core in try core.queuePurge(state, name) }
    }

    /// Deletes a queue; returns how many messages it held.
    @discardableResult
    public func queueDelete(_ name: String, ifUnused: Bool = false, ifEmpty: Bool = false) async throws -> UInt32 {
        let state = self.state
        return try await core.call("queue.delete \(name)") { core in
            try core.queueDelete(state, name, ifUnused: ifUnused, ifEmpty: ifEmpty)
        }
    }

    /// Limits unacknowledged deliveries to this channel's consumers (`global` false: per consumer).
    public func qos(prefetchCount: UInt16, global: Bool = false) async throws {
        let state = self.state
        try await core.call("basic.qos") { core in try core.qos(state, prefetchCount: prefetchCount, global: global) }
    }

    // MARK: Publishing

    /// Publishes one message. On a confirm channel, returns once the broker confirmed it.
    public func publish(_ message: OutboundMessage) async throws {
        let state = self.state
        try await core.perform(onlyWrites: true) { (core, pending: PendingResult<Void>) in
            core.publish(state, PublishRequest(message: message, waiter: .single(pending)))
        }
    }

    /// Publishes one message. On a confirm channel, returns once the broker confirmed it.
    public func publish(exchange: String = "", routingKey: String, body: [UInt8],
                        properties: BasicProperties = BasicProperties(), mandatory: Bool = false) async throws {
        try await publish(OutboundMessage(exchange: exchange, routingKey: routingKey, body: body,
                                          properties: properties, mandatory: mandatory))
    }

    /// Publishes messages back to back (pipelined under the confirm window)
    /// and returns each one's outcome, in order, once all are settled.
    ///
    /// `settling`: the delivery whose outcome these messages are. They go out
    /// only on the connection that delivered it: after that connection was
    /// lost (the broker delivers it again), each fails with `staleDelivery`,
    /// also one that was queued or held before the loss was noticed.
    public func publish(batch messages: [OutboundMessage], settling delivery: AMQPDelivery.Receipt? = nil) async throws -> [Result<Void, AMQPError>] {
        let state = self.state
        let generation = delivery?.generation
        return try await core.perform(onlyWrites: true) { (core, pending: PendingResult<[Result<Void, AMQPError>]>) in
            let batch = BatchConfirmation(count: messages.count, pending: pending)
            for (i, message) in messages.enumerated() {
                core.publish(state, PublishRequest(message: message, waiter: .batch(batch, index: i), generation: generation))
            }
        }
    }

    // MARK: Consuming

    /// Starts a consumer; deliveries arrive through the returned sequence.
    ///
    /// The sequence ends when the consumer is cancelled (by ``cancel(consumerTag:)``
    /// or by ending the iteration), and throws when the broker cancels it or
    /// the channel closes. It survives reconnects when recovery is on.
    public func consume(queue: String, consumerTag: String? = nil, noAck: Bool = false, exclusive: Bool = false,
                        arguments: FieldTable = [:]) async throws -> AMQPConsumer {
        let state = self.state
        let tag = consumerTag ?? {
            let n = consumerCounter.withLock { $0 += 1; return $0 }
            return "sluice-\(state.id)-\(n)-\(UInt32.random(in: 0...UInt32.max))"
        }()
        let deliveries = DeliveryQueue()
        let consumer = ConsumerState(tag: tag, queue: queue, noAck: noAck, exclusive: exclusive,
                                     arguments: arguments, deliveries: deliveries)
        do {
            try await core.call("basic.consume \(queue)") { core in try core.consume(state, consumer) }
        } catch {
            // Cancelled after the broker may have registered it: make sure it does not linger.
            core.submit { core in try? core.cancel(state, tag: tag) }
            deliveries.finish()
            throw error
        }
        let core = self.core
        deliveries.setOnTermination {
            // The iterating task stopped: stop the broker sending to it.
            core.submit { core in try? core.cancel(state, tag: tag) }
        }
        return AMQPConsumer(tag: tag, queue: queue, deliveries: deliveries, channel: self)
    }

    /// Cancels a consumer; its sequence ends after deliveries already received.
    public func cancel(consumerTag: String) async throws {
        let state = self.state
        try await core.call("basic.cancel \(consumerTag)") { core in try core.cancel(state, tag: consumerTag) }
    }

    /// Fetches one message, or nil if the queue is empty.
    public func get(queue: String, noAck: Bool = false) async throws -> AMQPDelivery? {
        let state = self.state
        return try await core.call("basic.get \(queue)") { core in try core.get(state, queue: queue, noAck: noAck) }
    }

    /// Acknowledges a delivery (with `multiple`, every earlier one on this channel too).
    public func ack(_ delivery: AMQPDelivery, multiple: Bool = false) async throws {
        try await acknowledge(delivery.receipt, .ack(multiple: multiple))
    }

    /// Negatively acknowledges a delivery.
    public func nack(_ delivery: AMQPDelivery, multiple: Bool = false, requeue: Bool = true) async throws {
        try await acknowledge(delivery.receipt, .nack(multiple: multiple, requeue: requeue))
    }

    /// Rejects a delivery.
    public func reject(_ delivery: AMQPDelivery, requeue: Bool = true) async throws {
        try await acknowledge(delivery.receipt, .reject(requeue: requeue))
    }

    /// AMQP acks have no reply, so this returns once the ack is queued for
    /// the connection thread; waiting for the socket write would only make
    /// every consumer pay a thread round trip per message. A delivery from a
    /// lost connection is refused here (or, if the loss races with this call,
    /// dropped by the thread): its ack must never reach the new connection.
    func acknowledge(_ delivery: AMQPDelivery.Receipt, _ kind: ConnectionCore.AckKind) async throws {
        guard delivery.channel === self else {
            throw AMQPError(.invalidArgument, operation: kind.name, message: "the delivery belongs to another channel")
        }
        guard core.connectedFlag.load(), delivery.generation == core.generationFlag.load() else {
            throw AMQPError(.staleDelivery, operation: "\(kind.name) delivery \(delivery.deliveryTag)",
                            message: "the delivery came on a connection that was lost; the broker redelivers it")
        }
        let state = self.state
        if case .ack(multiple: false) = kind {
            guard core.submitAck(.init(channel: state, deliveryTag: delivery.deliveryTag, generation: delivery.generation)) else {
                throw AMQPError(.connectionClosed, operation: kind.name, message: "the connection is closed")
            }
            return
        }
        let accepted = core.submit { core in
            do {
                try core.acknowledge(state, delivery, kind: kind)
            } catch {
                core.logger.debug("acknowledgement not sent", metadata: ["error": "\(error)"])
                if let error = error as? AMQPError { core.failIfConnectionLevel(error) }
            }
        }
        if !accepted {
            throw AMQPError(.connectionClosed, operation: kind.name, message: "the connection is closed")
        }
    }

    /// Closes the channel; its consumers end and unconfirmed publishes fail.
    public func close() async throws {
        let state = self.state
        try await core.call("channel.close") { core in try core.closeChannel(state) }
    }
}

/// A running consumer: an `AsyncSequence` of deliveries.
public struct AMQPConsumer: AsyncSequence, Sendable {
    public typealias Element = AMQPDelivery

    /// The consumer tag.
    public let tag: String
    /// The queue it consumes.
    public let queue: String
    let deliveries: DeliveryQueue
    /// The channel it runs on.
    public let channel: AMQPChannel

    /// One iterator per consumer, as with any stream of deliveries.
    public func makeAsyncIterator() -> Iterator {
        Iterator(reader: makeReader())
    }

    /// The consumer's deliveries as a reader class, for code that keeps it
    /// in a closure (no mutable iterator to box).
    public func makeReader() -> AMQPDeliveryReader {
        AMQPDeliveryReader(deliveries)
    }

    /// Reads the consumer's deliveries. Cancelling the task that iterates
    /// cancels the consumer.
    public struct Iterator: AsyncIteratorProtocol {
        let reader: AMQPDeliveryReader

        public mutating func next() async throws -> AMQPDelivery? {
            try await reader.next()
        }
    }

    /// Cancels the consumer.
    public func cancel() async throws {
        try await channel.cancel(consumerTag: tag)
    }
}
