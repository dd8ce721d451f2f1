public import SluiceWire

/// Strict order per key: a task enqueued with an order key
/// (``TaskEnvelope/orderKey``) goes to one of ``orderPartitionCount``
/// partition queues of its queue, picked by a stable hash of the key
/// (``orderPartition(ofKey:)``). Each partition is a quorum queue with a
/// single active consumer, read one task at a time: the tasks of a key run
/// one after another in enqueue order, while other partitions' keys run in
/// parallel.
///
/// Sluice picks the partition itself rather than use RabbitMQ's
/// consistent-hash exchange: that exchange rebuilds its ring when a node
/// restarts and may then route a key to another queue, where its new tasks
/// would run beside its older ones.
extension Topology {
    /// Partitions per queue: fixed, so that every producer and worker of a
    /// prefix agrees without being told (a key's partition moves when the
    /// count changes, which would break its order).
    public static let orderPartitionCount = 16

    /// The most bytes of an order key.
    public static let maxOrderKeyBytes = 255

    /// The exchange of every ordered partition: `<prefix>.ordered`, direct,
    /// routing key `<queue>.<partition>` (``orderRoutingKey(_:partition:)``).
    public var orderedExchange: String { "\(prefix).ordered" }

    /// Partition `index` of `queue`: `<prefix>.order.<queue>.<index>`.
    public func orderPartitionQueue(_ queue: String, _ index: Int) -> String { "\(prefix).order.\(queue).\(index)" }

    /// The routing key of `queue`'s partition `partition` on ``orderedExchange``.
    public func orderRoutingKey(_ queue: String, partition: Int) -> String { "\(queue).\(partition)" }

    /// A key's partition: FNV-1a (32 bits) of its UTF-8 bytes, modulo
    /// ``orderPartitionCount``; stable across processes, versions and languages.
    public static func orderPartition(ofKey key: String) -> Int {
        var hash: UInt32 = 0x811c_9dc5
        for byte in key.utf8 { hash = (hash ^ UInt32(byte)) &* 0x0100_0193 }
        return Int(hash % UInt32(orderPartitionCount))
    }

    public var orderedExchangeDeclaration: ExchangeDeclaration {
        ExchangeDeclaration(name: orderedExchange, type: "direct")
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

    /// Checks an order key: 1 to 255 bytes.
    public static func validateOrderKey(_ key: String) throws(SluiceError) {
        guard !key.isEmpty, key.utf8.count <= maxOrderKeyBytes else {
            throw SluiceError(.invalidArgument, "an order key must be 1-\(maxOrderKeyBytes) bytes (got \(key.utf8.count))")
        }
    }

    /// The queue and partition a broker queue name is one of, if it is.
    public func orderPartition(fromQueue name: String) -> (queue: String, index: Int)? {
        let p = "\(prefix).order."
        guard name.hasPrefix(p), let dot = name.lastIndex(of: "."), let index = Int(name[name.index(after: dot)...]),
              (0..<Self.orderPartitionCount).contains(index) else { return nil }
        let queue = String(name[name.index(name.startIndex, offsetBy: p.count)..<dot])
        return queue.isEmpty ? nil : (queue, index)
    }

    /// The message that puts an ordered task in its key's partition.
    func orderedMessage(queue: String, key: String, body: [UInt8], properties: BasicProperties) -> OutboundMessage {
        OutboundMessage(exchange: orderedExchange, routingKey: orderRoutingKey(queue, partition: Self.orderPartition(ofKey: key)),
                        body: body, properties: properties, mandatory: true)
    }
}
