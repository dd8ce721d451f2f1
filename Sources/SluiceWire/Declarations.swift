/// What to declare for an exchange.
public struct ExchangeDeclaration: Sendable, Hashable {
    /// Exchange name.
    public var name: String
    /// `direct`, `topic`, `fanout`, `headers`, or a plugin's type.
    public var type: String
    /// Survives a broker restart.
    public var durable: Bool
    /// Deleted when its last binding goes.
    public var autoDelete: Bool
    /// Only other exchanges may publish to it.
    public var `internal`: Bool
    /// Extra arguments (for example `alternate-exchange`).
    public var arguments: FieldTable

    /// A durable exchange by default.
    public init(name: String, type: String = "direct", durable: Bool = true, autoDelete: Bool = false,
                internal: Bool = false, arguments: FieldTable = [:]) {
        self.name = name
        self.type = type
        self.durable = durable
        self.autoDelete = autoDelete
        self.internal = `internal`
        self.arguments = arguments
    }
}

/// What to declare for a queue.
public struct QueueDeclaration: Sendable, Hashable {
    /// Queue name (not empty: server-named queues cannot be recovered by name).
    public var name: String
    /// Survives a broker restart.
    public var durable: Bool
    /// Used by this connection only and deleted with it.
    public var exclusive: Bool
    /// Deleted when its last consumer goes.
    public var autoDelete: Bool
    /// Queue arguments: `x-queue-type`, `x-delivery-limit`, `x-dead-letter-exchange`...
    public var arguments: FieldTable

    /// A durable queue by default.
    public init(name: String, durable: Bool = true, exclusive: Bool = false, autoDelete: Bool = false,
                arguments: FieldTable = [:]) {
        self.name = name
        self.durable = durable
        self.exclusive = exclusive
        self.autoDelete = autoDelete
        self.arguments = arguments
    }

    /// A durable quorum queue.
    public static func quorum(_ name: String, arguments: FieldTable = [:]) -> QueueDeclaration {
        var args = arguments
        args["x-queue-type"] = "quorum"
        return QueueDeclaration(name: name, arguments: args)
    }
}

/// The broker's answer to a queue declare: how many messages and consumers it has.
public struct QueueState: Sendable, Hashable {
    /// The queue's name.
    public var name: String
    /// Messages ready for delivery (not counting unacknowledged ones).
    public var messageCount: UInt32
    /// Active consumers.
    public var consumerCount: UInt32

    /// Counts for a queue.
    public init(name: String, messageCount: UInt32, consumerCount: UInt32) {
        self.name = name
        self.messageCount = messageCount
        self.consumerCount = consumerCount
    }
}
