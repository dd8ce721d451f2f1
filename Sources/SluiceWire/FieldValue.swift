/// One value in an AMQP field table (headers, queue arguments...).
///
/// The cases are the field types RabbitMQ understands. Integer literals become
/// `.int64`, which RabbitMQ accepts wherever it wants an integer argument.
public enum FieldValue: Sendable, Hashable {
    case bool(Bool)
    case int8(Int8)
    case uint8(UInt8)
    case int16(Int16)
    case uint16(UInt16)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case float(Float)
    case double(Double)
    /// A decimal: `value` × 10^-`scale`.
    case decimal(scale: UInt8, value: UInt32)
    /// A long string (type `S`), UTF-8.
    case string(String)
    /// A byte array (type `x`).
    case bytes([UInt8])
    case array([FieldValue])
    case table(FieldTable)
    /// Seconds since the Unix epoch (type `T`).
    case timestamp(UInt64)
    /// No value (type `V`).
    case void

    /// The value as a string, if it is one (long string or UTF-8 bytes).
    public var stringValue: String? {
        switch self {
        case .string(let s): s
        case .bytes(let b): String(validating: b, as: UTF8.self)
        default: nil
        }
    }

    /// The value as an integer, if it is any integer type that fits.
    public var intValue: Int? {
        switch self {
        case .int8(let v): Int(v)
        case .uint8(let v): Int(v)
        case .int16(let v): Int(v)
        case .uint16(let v): Int(v)
        case .int32(let v): Int(v)
        case .uint32(let v): Int(v)
        case .int64(let v): Int(exactly: v)
        case .timestamp(let v): Int(exactly: v)
        default: nil
        }
    }

    /// The value as a Boolean, if it is one.
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The value as a table, if it is one.
    public var tableValue: FieldTable? {
        if case .table(let t) = self { return t }
        return nil
    }

    /// The value as an array, if it is one.
    public var arrayValue: [FieldValue]? {
        if case .array(let a) = self { return a }
        return nil
    }
}

extension FieldValue: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}

extension FieldValue: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int64) { self = .int64(value) }
}

extension FieldValue: ExpressibleByBooleanLiteral {
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension FieldValue: ExpressibleByFloatLiteral {
    public init(floatLiteral value: Double) { self = .double(value) }
}

extension FieldValue: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: FieldValue...) { self = .array(elements) }
}

extension FieldValue: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, FieldValue)...) {
        self = .table(FieldTable(elements))
    }
}
