/// The sizes AMQP 0-9-1 and rabbitmq-c can carry, checked before a message
/// is handed to the C library.
///
/// rabbitmq-c encodes a publish as three frames and writes each as soon as it
/// is encoded: when the properties do not encode (a short string over 255
/// bytes, headers larger than a frame), the method frame has already gone out
/// and the connection is left mid-message. So every limit is checked here
/// first, and a message that breaks one fails alone, with its own error,
/// while the connection stays up.
public enum MessageLimits {
    /// AMQP short strings (names, ids, routing keys, header keys, most
    /// properties) carry at most 255 bytes of UTF-8.
    public static let shortStringBytes = 255

    /// RabbitMQ's default `max_message_size` (128 MiB): a larger body makes
    /// the broker close the channel, failing every publish in flight on it.
    public static let defaultMaxMessageBytes = 128 << 20

    /// Bytes of a content header frame besides the properties: frame header
    /// (7), class id, weight and body size (12), frame end (1).
    static let headerFrameOverhead = 20

    /// Checks that `message` can be published on a connection whose frames
    /// are at most `frameMax` bytes and whose broker takes bodies up to
    /// `maxMessageBytes`. Throws ``AMQPError/Code-swift.struct/unencodable``
    /// naming the field and the limit.
    public static func check(_ message: OutboundMessage, frameMax: Int,
                             maxMessageBytes: Int = defaultMaxMessageBytes) throws(AMQPError) {
        let operation = "publish to \(message.exchange.isEmpty ? "(default)" : message.exchange)"
        try checkShortString(message.exchange, field: "exchange", operation: operation)
        try checkShortString(message.routingKey, field: "routing key", operation: operation)
        if message.body.count > maxMessageBytes {
            throw AMQPError(.unencodable, operation: operation,
                            message: "the body is \(message.body.count) bytes; the broker takes at most \(maxMessageBytes)")
        }
        let size = try propertiesSize(message.properties, operation: operation)
        let room = frameMax - headerFrameOverhead
        if size > room {
            throw AMQPError(.unencodable, operation: operation,
                            message: "the properties and headers encode to \(size) bytes; a frame of \(frameMax) bytes holds \(room)")
        }
    }

    /// The encoded size of `properties` (flags included); throws if a short
    /// string in them is too long.
    public static func propertiesSize(_ properties: BasicProperties, operation: String = "encode properties") throws(AMQPError) -> Int {
        var size = 2  // property flags: basic has 14 properties, one flag word
        let shortStrings: [(String, String?)] = [
            ("content_type", properties.contentType), ("content_encoding", properties.contentEncoding),
            ("correlation_id", properties.correlationId), ("reply_to", properties.replyTo),
            ("expiration", properties.expiration), ("message_id", properties.messageId), ("type", properties.type),
            ("user_id", properties.userId), ("app_id", properties.appId),
        ]
        for case let (field, value?) in shortStrings {
            try checkShortString(value, field: field, operation: operation)
            size += 1 + value.utf8.count
        }
        if properties.deliveryMode != nil { size += 1 }
        if properties.priority != nil { size += 1 }
        if properties.timestamp != nil { size += 8 }
        if let headers = properties.headers { size += try tableSize(headers, path: "headers", operation: operation) }
        return size
    }

    /// The encoded size of a field table (its 4-byte length included).
    /// `path` names the table in an error; it is built only then (every
    /// publish checks its headers: building a path per key cost a fifth of
    /// an enqueue's instructions).
    static func tableSize(_ table: FieldTable, path: @autoclosure () -> String, operation: String) throws(AMQPError) -> Int {
        var size = 4
        for (key, value) in table {
            if key.utf8.count > shortStringBytes {
                throw AMQPError(.unencodable, operation: operation,
                                message: "a key in \(path()) is \(key.utf8.count) bytes; AMQP allows \(shortStringBytes) (\(key.prefix(40))...)")
            }
            size += 1 + key.utf8.count + (try valueSize(value, path: "\(path()).\(key.prefix(40))", operation: operation))
        }
        return size
    }

    static func valueSize(_ value: FieldValue, path: @autoclosure () -> String, operation: String) throws(AMQPError) -> Int {
        let payload: Int
        switch value {
        case .bool, .int8, .uint8: payload = 1
        case .int16, .uint16: payload = 2
        case .int32, .uint32, .float: payload = 4
        case .int64, .double, .timestamp: payload = 8
        case .decimal: payload = 5
        case .string(let s): payload = 4 + s.utf8.count
        case .bytes(let b): payload = 4 + b.count
        case .array(let items):
            var total = 4
            for item in items { total += try valueSize(item, path: path(), operation: operation) }
            payload = total
        case .table(let t): payload = try tableSize(t, path: path(), operation: operation)
        case .void: payload = 0
        }
        return 1 + payload
    }

    static func checkShortString(_ value: String, field: String, operation: String) throws(AMQPError) {
        let count = value.utf8.count
        if count > shortStringBytes {
            throw AMQPError(.unencodable, operation: operation,
                            message: "\(field) is \(count) bytes; AMQP allows \(shortStringBytes)")
        }
    }
}
