public import Foundation

/// An outbox row as read from the store, decoded only when asked: the relay
/// pages past rows it published already (their deletion waits for the next
/// commit), and decoding those again took about 5 % of a busy coordinator's
/// CPU (48,000 of the 50,000 rows it read while applying 90,000 transitions).
public struct OutboxRow: Sendable, Hashable {
    /// Increasing: the publish order.
    public var id: Int64
    /// The row's stored JSON (a step task or a run message).
    public var payload: String
    public var createdAt: Date

    public init(id: Int64, payload: String, createdAt: Date) {
        self.id = id
        self.payload = payload
        self.createdAt = createdAt
    }

    /// The entry the row holds.
    public func decode() throws -> OutboxEntry {
        try OutboxEntry.decode(id: id, payload: payload, createdAt: createdAt)
    }
}
