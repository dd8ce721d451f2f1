public import SluiceWire

/// A message delivered to a consumer or fetched with `basic.get`.
public struct AMQPDelivery: Sendable {
    /// The message body.
    public var body: [UInt8]
    /// The message properties and headers.
    public var properties: BasicProperties
    /// The broker's tag for this delivery on its channel.
    public var deliveryTag: UInt64
    /// Whether the broker delivered this message before (to any consumer).
    public var redelivered: Bool
    /// The exchange it was published to.
    public var exchange: String
    /// The routing key it was published with.
    public var routingKey: String
    /// The consumer it was delivered to; nil for `basic.get`.
    public var consumerTag: String?
    /// For `basic.get`: messages left in the queue.
    public var messageCount: UInt32?

    /// The channel that received it; acks go back through it.
    public let channel: AMQPChannel
    /// Which connection (counting reconnects) it arrived on.
    let generation: UInt64

    /// What settling this delivery takes (channel, tag, connection), without
    /// its body and properties: three words, so a value that keeps it for
    /// later (a `BrokerDelivery`'s acknowledger) needs no allocation.
    public var receipt: Receipt { Receipt(channel: channel, deliveryTag: deliveryTag, generation: generation) }

    /// Settles a delivery: see ``AMQPDelivery/receipt``.
    public struct Receipt: Sendable {
        /// The channel that received it.
        public let channel: AMQPChannel
        /// The broker's tag for the delivery on its channel.
        public let deliveryTag: UInt64
        let generation: UInt64

        /// Whether it came on a connection since lost: its ack would be
        /// refused, and the broker delivers it again.
        public var isStale: Bool {
            !channel.core.connectedFlag.load() || generation != channel.core.generationFlag.load()
        }

        /// Whether it came on `connection` (its generation means something only there).
        public func came(on connection: AMQPConnection) -> Bool { channel.core === connection.core }

        /// Acknowledges the delivery.
        public func ack() async throws {
            try await channel.acknowledge(self, .ack(multiple: false))
        }

        /// Rejects it; `requeue` false dead-letters or drops it.
        public func reject(requeue: Bool = true) async throws {
            try await channel.acknowledge(self, .reject(requeue: requeue))
        }
    }

    /// Acknowledges this delivery (and, with `multiple`, all before it on the channel).
    public func ack(multiple: Bool = false) async throws {
        try await channel.ack(self, multiple: multiple)
    }

    /// Negatively acknowledges it; `requeue` false dead-letters or drops it.
    public func nack(multiple: Bool = false, requeue: Bool = true) async throws {
        try await channel.nack(self, multiple: multiple, requeue: requeue)
    }

    /// Rejects it; `requeue` false dead-letters or drops it.
    public func reject(requeue: Bool = true) async throws {
        try await channel.reject(self, requeue: requeue)
    }
}
