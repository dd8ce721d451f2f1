/// The AMQP `basic` content properties of a message.
///
/// Sluice's wire format puts task metadata here: `messageId` is the task id,
/// `type` the task name, `headers` the protocol headers (docs/wire-format.md).
public struct BasicProperties: Sendable, Hashable, CustomReflectable {
    // The fields live in one box, copied on write: a value that passes
    // through many hands per message is then copied with one reference
    // count instead of one per field.
    private struct Fields: Sendable, Hashable {
        var contentType: String?
        var contentEncoding: String?
        var headers: FieldTable?
        var deliveryMode: UInt8?
        var priority: UInt8?
        var correlationId: String?
        var replyTo: String?
        var expiration: String?
        var messageId: String?
        var timestamp: UInt64?
        var type: String?
        var userId: String?
        var appId: String?
    }

    /// `@unchecked`: `fields` is written only through ``mutate(_:)``, after
    /// making the box unique, so no two values ever share a box being written.
    private final class Box: @unchecked Sendable {
        var fields: Fields
        init(_ fields: Fields) { self.fields = fields }
    }

    private var box: Box

    private mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&box) { box = Box(box.fields) }
    }

    private mutating func mutate(_ change: (inout Fields) -> Void) {
        makeUnique()
        change(&box.fields)
    }

    public static func == (a: BasicProperties, b: BasicProperties) -> Bool { a.box === b.box || a.box.fields == b.box.fields }
    public func hash(into hasher: inout Hasher) { hasher.combine(box.fields) }

    /// Printed and inspected as its fields, not as the box.
    public var customMirror: Mirror { Mirror(self, children: Mirror(reflecting: box.fields).children, displayStyle: .struct) }

    /// MIME type of the body, for example `application/json`.
    public var contentType: String? {
        get { box.fields.contentType }
        set { mutate { $0.contentType = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.contentType
        }
    }

    /// Encoding of the body, for example `gzip`.
    public var contentEncoding: String? {
        get { box.fields.contentEncoding }
        set { mutate { $0.contentEncoding = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.contentEncoding
        }
    }

    /// Application headers.
    public var headers: FieldTable? {
        get { box.fields.headers }
        set { mutate { $0.headers = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.headers
        }
    }

    /// 1 = transient, 2 = persistent.
    public var deliveryMode: UInt8? {
        get { box.fields.deliveryMode }
        set { mutate { $0.deliveryMode = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.deliveryMode
        }
    }

    /// Priority 0-9 (only for priority queues).
    public var priority: UInt8? {
        get { box.fields.priority }
        set { mutate { $0.priority = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.priority
        }
    }

    /// Correlation id.
    public var correlationId: String? {
        get { box.fields.correlationId }
        set { mutate { $0.correlationId = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.correlationId
        }
    }

    /// Reply-to queue name.
    public var replyTo: String? {
        get { box.fields.replyTo }
        set { mutate { $0.replyTo = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.replyTo
        }
    }

    /// Per-message TTL in milliseconds, as a decimal string.
    public var expiration: String? {
        get { box.fields.expiration }
        set { mutate { $0.expiration = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.expiration
        }
    }

    /// Message id.
    public var messageId: String? {
        get { box.fields.messageId }
        set { mutate { $0.messageId = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.messageId
        }
    }

    /// Seconds since the Unix epoch.
    public var timestamp: UInt64? {
        get { box.fields.timestamp }
        set { mutate { $0.timestamp = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.timestamp
        }
    }

    /// Message type name.
    public var type: String? {
        get { box.fields.type }
        set { mutate { $0.type = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.type
        }
    }

    /// Publishing user; RabbitMQ checks it against the connection's user.
    public var userId: String? {
        get { box.fields.userId }
        set { mutate { $0.userId = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.userId
        }
    }

    /// Publishing application.
    public var appId: String? {
        get { box.fields.appId }
        set { mutate { $0.appId = newValue } }
        _modify {
            makeUnique()
            yield &box.fields.appId
        }
    }

    /// Properties with every field unset.
    public init(contentType: String? = nil, contentEncoding: String? = nil, headers: FieldTable? = nil,
                deliveryMode: UInt8? = nil, priority: UInt8? = nil, correlationId: String? = nil,
                replyTo: String? = nil, expiration: String? = nil, messageId: String? = nil,
                timestamp: UInt64? = nil, type: String? = nil, userId: String? = nil, appId: String? = nil) {
        box = Box(Fields(contentType: contentType, contentEncoding: contentEncoding, headers: headers, deliveryMode: deliveryMode, priority: priority, correlationId: correlationId, replyTo: replyTo, expiration: expiration, messageId: messageId, timestamp: timestamp, type: type, userId: userId, appId: appId))
    }

    /// Persistent delivery mode (2), which durable queues keep across restarts.
    public static let persistent = BasicProperties(deliveryMode: 2)
}
