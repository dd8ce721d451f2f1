public import SluiceWire

/// The limits a task must keep to travel through RabbitMQ, and the one way
/// Sluice derives ids that stay within them.
///
/// AMQP carries ids, names, routing keys and header keys as short strings of
/// at most 255 bytes; a frame (128 KiB by default) must hold all of a
/// message's properties and headers. A task is checked against these where it
/// enters (``TaskEnvelope/validateLimits()``), so that it can never fail later,
/// when a worker adds its retry or dead-letter headers.
public enum WireLimits {
    /// Bytes of an AMQP short string: task id, task name, correlation id,
    /// header keys.
    public static let shortStringBytes = MessageLimits.shortStringBytes

    /// The most a task's properties and headers may take when it is enqueued:
    /// half the default frame, so that the retry and dead-letter copies (which
    /// add up to about 5 KiB of headers) always fit.
    public static let maxTaskHeaderBytes = 64 << 10

    /// `value` if it fits in `limit` bytes; otherwise a prefix of it, `~`, and
    /// a 32-hex-digit hash of the whole, `limit` bytes at most. The same input
    /// always gives the same id, so a derived id stays stable across retries
    /// and restarts; different long inputs differ in their hash.
    public static func boundedID(_ value: String, limit: Int = shortStringBytes) -> String {
        let utf8 = value.utf8
        guard utf8.count > limit else { return value }
        let hash = "~" + contentHash(Array(utf8))
        var prefix = Substring(value)
        // Cut on a character boundary, so the result is valid UTF-8.
        while prefix.utf8.count + hash.utf8.count > limit { prefix = prefix.dropLast() }
        return String(prefix) + hash
    }

    /// Throws naming `field` when `value` is longer than a short string.
    static func checkShortString(_ value: String, field: String) throws(FieldTooLong) {
        let count = value.utf8.count
        if count > shortStringBytes { throw FieldTooLong(field: field, bytes: count, limit: shortStringBytes) }
    }

    /// A field over its limit.
    struct FieldTooLong: Error {
        var field: String
        var bytes: Int
        var limit: Int
        var message: String { "\(field) is \(bytes) bytes; the limit is \(limit)" }
    }
}

/// A 128-bit FNV-1a style hash as 32 lowercase hex digits: stable across
/// processes and versions (unlike `Hasher`), not cryptographic.
func contentHash(_ bytes: [UInt8]) -> String {
    var hash: (UInt64, UInt64) = (0xcbf2_9ce4_8422_2325, 0x6c62_272e_07bb_0142)
    for b in bytes {
        hash.0 = (hash.0 ^ UInt64(b)) &* 0x100_0000_01b3
        hash.1 = (hash.1 ^ UInt64(b) ^ (hash.0 >> 29)) &* 0x100_0000_01b3
    }
    return Hex.encode(withUnsafeBytes(of: hash.0.bigEndian, Array.init) + withUnsafeBytes(of: hash.1.bigEndian, Array.init))
}

extension TaskEnvelope {
    /// Checks every field that becomes an AMQP short string (id, name,
    /// workflow run id, header keys), the queue name, and the size of the
    /// properties and headers; throws an `invalid_argument` error naming the
    /// field and its limit.
    public func validateLimits() throws(SluiceError) {
        try validateLimits(encodedAs: encode().properties)
    }

    /// The same, with the properties this task was already encoded into
    /// (a producer has them in hand: no second encoding per task).
    public func validateLimits(encodedAs properties: BasicProperties) throws(SluiceError) {
        func fail(_ message: String) -> SluiceError { SluiceError(.invalidArgument, message, task: name, queue: queue) }
        if id.isEmpty { throw fail("the task id is empty") }
        if name.isEmpty { throw fail("the task name is empty") }
        do {
            try WireLimits.checkShortString(id, field: "the task id")
            try WireLimits.checkShortString(name, field: "the task name")
            if let workflowRunID { try WireLimits.checkShortString(workflowRunID, field: "the workflow run id") }
            for (key, _) in otherHeaders { try WireLimits.checkShortString(key, field: "header key '\(key.prefix(40))...'") }
        } catch {
            throw fail(error.message)
        }
        guard Topology.isValidName(queue) else {
            throw fail("queue name '\(queue.prefix(120))' must be 1-100 letters, digits, '-', '_' or '.'")
        }
        let size: Int
        do {
            size = try MessageLimits.propertiesSize(properties)
        } catch {
            throw fail(error.message)
        }
        if size > WireLimits.maxTaskHeaderBytes {
            throw fail("the task's properties and headers are \(size) bytes; the limit is \(WireLimits.maxTaskHeaderBytes)")
        }
    }
}
