import SluiceCore

/// Reads JSON text into a ``JSONValue`` without Foundation's `JSONDecoder`,
/// whose path through `JSONValue`'s `Decodable` init tries each type in turn
/// (every miss builds an error): step outputs and map elements are read
/// this way by the thousand per second. Strict, like `TaskEventReader`:
/// anything it does not expect (a repeated key, invalid UTF-8, a number out
/// of range, a bad escape, deep nesting) makes it give up and return nil,
/// and `JSONValue.parse` decodes with `JSONDecoder`, so
/// the result, or the error, is always that decoder's.
struct JSONValueReader {
    private var scan: JSONScanner
    private var i: Int {
        get { scan.i }
        set { scan.i = newValue }
    }
    private var bytes: UnsafeBufferPointer<UInt8> { scan.bytes }

    /// Past this the reader leaves the text to `JSONDecoder` (which has
    /// limits of its own); workflow values are rarely a tenth as deep.
    static let maxDepth = 128

    private init(_ bytes: UnsafeBufferPointer<UInt8>) { scan = JSONScanner(bytes) }

    /// The one value `bytes` hold (whitespace around it allowed), or nil to fall back.
    static func value(_ bytes: [UInt8]) -> JSONValue? {
        bytes.withUnsafeBufferPointer { buffer in
            var reader = JSONValueReader(buffer)
            reader.scan.skipSpace()
            guard let value = reader.value(depth: 0) else { return nil }
            reader.scan.skipSpace()
            // (Not `? value : nil`: JSONValue takes a nil literal, as `.null`.)
            guard reader.i == buffer.count else { return nil }
            return value
        }
    }

    private mutating func value(depth: Int) -> JSONValue? {
        guard depth < Self.maxDepth, i < bytes.count else { return nil }
        switch bytes[i] {
        case UInt8(ascii: "{"): return object(depth: depth + 1)
        case UInt8(ascii: "["): return array(depth: depth + 1)
        case UInt8(ascii: "\""): return scan.string().map { .string($0) }
        case UInt8(ascii: "t"): return scan.takeWord("true") ? Optional(.bool(true)) : Optional.none
        case UInt8(ascii: "f"): return scan.takeWord("false") ? Optional(.bool(false)) : Optional.none
        case UInt8(ascii: "n"): return scan.takeWord("null") ? Optional(.null) : Optional.none
        default: return scan.number().map { .number($0) }
        }
    }

    private mutating func object(depth: Int) -> JSONValue? {
        i += 1
        var members: [String: JSONValue] = [:]
        scan.skipSpace()
        if scan.take(UInt8(ascii: "}")) { return .object(members) }
        while true {
            scan.skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\""), let key = scan.string() else { return nil }
            scan.skipSpace()
            guard scan.take(UInt8(ascii: ":")) else { return nil }
            scan.skipSpace()
            guard let member = value(depth: depth) else { return nil }
            // A repeated key: which one a decoder keeps is its own business.
            guard members.updateValue(member, forKey: key) == nil else { return nil }
            scan.skipSpace()
            if scan.take(UInt8(ascii: "}")) { return .object(members) }
            guard scan.take(UInt8(ascii: ",")) else { return nil }
        }
    }

    private mutating func array(depth: Int) -> JSONValue? {
        i += 1
        var elements: [JSONValue] = []
        scan.skipSpace()
        if scan.take(UInt8(ascii: "]")) { return .array(elements) }
        while true {
            scan.skipSpace()
            guard let element = value(depth: depth) else { return nil }
            elements.append(element)
            scan.skipSpace()
            if scan.take(UInt8(ascii: "]")) { return .array(elements) }
            guard scan.take(UInt8(ascii: ",")) else { return nil }
        }
    }
}
