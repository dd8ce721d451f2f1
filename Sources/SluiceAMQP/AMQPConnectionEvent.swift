public import SluiceWire

/// Something that happened to a connection, for its users to react to.
public enum AMQPConnectionEvent: Sendable {
    /// The broker stopped reading from this connection (resource alarm).
    /// Publishes are held until ``unblocked``.
    case blocked(reason: String)
    /// The broker reads from this connection again.
    case unblocked
    /// The connection was lost; if recovery is on, reconnection starts now.
    /// Deliveries received on it can no longer be acknowledged.
    case disconnected(AMQPError)
    /// The connection is back: topology, channels and consumers were restored.
    /// `lostDeliveries` are the unacknowledged deliveries of the old connection;
    /// the broker will redeliver them, and acking them now throws `staleDelivery`.
    case recovered(lostDeliveries: [LostDelivery])
    /// The connection ended for good: closed by this process (nil) or failed
    /// with recovery off or exhausted.
    case closed(AMQPError?)
}

/// An unacknowledged delivery that was lost with its connection.
public struct LostDelivery: Sendable, Hashable {
    /// The channel it came on.
    public var channel: UInt16
    /// Its delivery tag on the old connection.
    public var deliveryTag: UInt64
    /// The consumer it was delivered to (nil for `basic.get`).
    public var consumerTag: String?
}
