/// A message to publish.
public struct OutboundMessage: Sendable {
    /// Target exchange; "" is the default exchange (routing key = queue name).
    public var exchange: String
    /// Routing key.
    public var routingKey: String
    /// Body bytes.
    public var body: [UInt8]
    /// Properties and headers.
    public var properties: BasicProperties
    /// Fail with `unroutable` when no queue receives it (confirm channels only).
    public var mandatory: Bool

    /// A message.
    public init(exchange: String = "", routingKey: String, body: [UInt8], properties: BasicProperties = BasicProperties(),
                mandatory: Bool = false) {
        self.exchange = exchange
        self.routingKey = routingKey
        self.body = body
        self.properties = properties
        self.mandatory = mandatory
    }
}
