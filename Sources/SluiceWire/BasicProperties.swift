/// The AMQP `basic` content properties of a message.
///
/// Sluice's wire format puts task metadata here: `messageId` is the task id,
/// `type` the task name, `headers` the protocol headers (docs/wire-format.md).
public struct BasicProperties: Sendable, Hashable {
    /// MIME type of the body, for example `application/json`.
    public var contentType: String?
    /// Encoding of the body, for example `gzip`.
    public var contentEncoding: String?
    /// Application headers.
    public var headers: FieldTable?
    /// 1 = transient, 2 = persistent.
    public var deliveryMode: UInt8?
    /// Priority 0-9 (only for priority queues).
    public var priority: UInt8?
    /// Correlation id.
    public var correlationId: String?
    /// Reply-to queue name.
    public var replyTo: String?
    /// Per-message TTL in milliseconds, as a decimal string.
    public var expiration: String?
    /// Message id.
    public var messageId: String?
    /// Seconds since the Unix epoch.
    public var timestamp: UInt64?
    /// Message type name.
    public var type: String?
    /// Publishing user; RabbitMQ checks it against the connection's user.
    public var userId: String?
    /// Publishing application.
    public var appId: String?

    /// Properties with every field unset.
    public init(contentType: String? = nil, contentEncoding: String? = nil, headers: FieldTable? = nil,
                deliveryMode: UInt8? = nil, priority: UInt8? = nil, correlationId: String? = nil,
                replyTo: String? = nil, expiration: String? = nil, messageId: String? = nil,
                timestamp: UInt64? = nil, type: String? = nil, userId: String? = nil, appId: String? = nil) {
        self.contentType = contentType
        self.contentEncoding = contentEncoding
        self.headers = headers
        self.deliveryMode = deliveryMode
        self.priority = priority
        self.correlationId = correlationId
        self.replyTo = replyTo
        self.expiration = expiration
        self.messageId = messageId
        self.timestamp = timestamp
        self.type = type
        self.userId = userId
        self.appId = appId
    }

    /// Persistent delivery mode (2), which durable queues keep across restarts.
    public static let persistent = BasicProperties(deliveryMode: 2)
}
