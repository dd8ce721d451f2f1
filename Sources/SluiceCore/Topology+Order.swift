public import SluiceWire

/// Strict order per key: tasks enqueued with an order key
/// (``TaskEnvelope/orderKey``) go to the queue's ordered exchange, a
/// consistent-hash exchange (RabbitMQ's `rabbitmq_consistent_hash_exchange`
/// plugin) that routes by the key into one of ``orderPartitionCount``
/// partition queues. Each partition is a quorum queue with a single active
/// consumer, read one task at a time: the tasks of a key run one after
/// another in enqueue order, while keys of other partitions run in parallel
/// on any worker.
extension Topology {
    /// Partitions per queue: fixed, so that every producer and worker of a
    /// prefix agrees without being told (a key's partition moves when the
    /// count changes, which would break its order).
    public static let orderPartitionCount = 16

    /// The most bytes of an order key (it is the routing key).
    public static let maxOrderKeyBytes = 255

    /// The ordered exchange of `queue`: `<prefix>.ordered.<queue>`,
    /// type `x-consistent-hash`, routing key = the order key.
    public func orderedExchange(_ queue: String) -> String { "\(prefix).ordered.\(queue)" }

    /// Partition `index` of `queue`: `<prefix>.order.<queue>.<index>`.
    public func orderPartitionQueue(_ queue: String, _ index: Int) -> String { "\(prefix).order.\(queue).\(index)" }

    public func orderedExchangeDeclaration(_ queue: String) -> ExchangeDeclaration {
        ExchangeDeclaration(name: orderedExchange(queue), type: "x-consistent-hash")
    }

    /// A partition: quorum, one active consumer at a time (the others
    /// stand by and take over when it goes), the delivery limit, and
    /// dead-lettering to the queue's dead queue like its work queue.
    public func orderPartitionDeclaration(_ queue: String, _ index: Int) -> QueueDeclaration {
        quorumQueue(orderPartitionQueue(queue, index), arguments: [
            "x-single-active-consumer": .bool(true),
            "x-delivery-limit": .int64(Int64(deliveryLimit)),
            "x-dead-letter-exchange": .string(deadExchange),
            "x-dead-letter-routing-key": .string(queue),
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        ])
    }

    /// The weight each partition is bound with (equal shares of the hash ring).
    public static let orderPartitionWeight = "1"

    /// Checks an order key: 1 to 255 bytes.
    public static func validateOrderKey(_ key: String) throws(SluiceError) {
        guard !key.isEmpty, key.utf8.count <= maxOrderKeyBytes else {
            throw SluiceError(.invalidArgument, "an order key must be 1-\(maxOrderKeyBytes) bytes (got \(key.utf8.count))")
        }
    }

    /// The queue and partition a broker queue name is one of, if it is.
    public func orderPartition(fromQueue name: String) -> (queue: String, index: Int)? {
        let p = "\(prefix).order."
        guard name.hasPrefix(p), let dot = name.lastIndex(of: "."), let index = Int(name[name.index(after: dot)...]) else { return nil }
        let queue = String(name[name.index(name.startIndex, offsetBy: p.count)..<dot])
        return queue.isEmpty ? nil : (queue, index)
    }
}
