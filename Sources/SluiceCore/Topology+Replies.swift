public import SluiceWire

/// Results: a producer that waits for a task's outcome names a reply queue
/// in the task's `reply_to`; the worker sends the final outcome there
/// through the default exchange (AMQP's request/reply convention).
extension Topology {
    /// A producer's reply queue (`<prefix>.reply.<id>`): quorum, so that a
    /// reply confirmed into it survives a broker node, and expiring once
    /// unused for a while, so that a producer that went away leaves nothing.
    public func replyQueue(_ id: String) -> String { "\(prefix).reply.\(id)" }

    /// The declaration of a reply queue that the broker deletes after
    /// `expiresAfterMilliseconds` without a consumer (`x-expires`).
    public func replyQueueDeclaration(_ name: String, expiresAfterMilliseconds: Int) -> QueueDeclaration {
        quorumQueue(name, arguments: ["x-expires": .int64(Int64(max(1_000, expiresAfterMilliseconds)))])
    }

    /// How a direct reply-to address looks once the broker rewrote it (a
    /// producer names the pseudo-queue `amq.rabbitmq.reply-to`; the broker
    /// adds a channel token).
    public static let directReplyToPrefix = "amq.rabbitmq.reply-to."

    /// Whether `name` is one of this prefix's reply queues: `<prefix>.reply.`
    /// and then 1-64 letters, digits, '-' or '_'. No dot, so that no other
    /// prefix's queue (a deployment whose prefix is `<prefix>.reply` has
    /// `<prefix>.reply.q.<queue>`) can ever pass for one.
    public func isReplyQueue(_ name: String) -> Bool {
        let own = "\(prefix).reply."
        guard name.hasPrefix(own) else { return false }
        let suffix = String(name.utf8.dropFirst(own.utf8.count))!
        return suffix.utf8.count <= 64 && Self.isValidName(suffix) && !suffix.contains(".")
    }

    /// Whether a worker may answer to `address`: one of this prefix's reply
    /// queues (``isReplyQueue(_:)``), or a direct reply-to address as the
    /// broker rewrote it (it names a channel, never a queue). Nothing else:
    /// a producer must not be able to make workers publish into a work,
    /// dead or coordinator queue through the default exchange.
    public func isReplyAddress(_ address: String) -> Bool {
        isReplyQueue(address)
            || (address.utf8.count > Self.directReplyToPrefix.utf8.count && address.hasPrefix(Self.directReplyToPrefix))
    }

    /// A task's final outcome (a `succeeded` or `dead` event, signed like
    /// events), for the producer waiting at `address`. Mandatory: when the
    /// reply queue is gone, the broker returns it, and nobody waits anyway.
    public func replyMessage(_ event: TaskEvent, to address: String) -> OutboundMessage {
        OutboundMessage(exchange: "", routingKey: address, body: event.jsonBytes(),
                        properties: BasicProperties(contentType: "application/json", deliveryMode: 2,
                                                    correlationId: event.taskID,
                                                    messageId: WireLimits.boundedID("\(event.taskID).\(event.attempt).result"),
                                                    type: Self.replyType),
                        mandatory: true)
    }

    /// The `type` of a reply message.
    public static let replyType = "sluice.result"
}
