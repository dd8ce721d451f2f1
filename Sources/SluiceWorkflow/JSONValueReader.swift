/// Reads JSON text into a ``JSONValue`` without Foundation's `JSONDecoder`,
/// whose path through `JSONValue`'s `Decodable` init tries each type in turn
/// (every miss builds an error): step outputs and map elements are read
/// this way by the thousand per second. Strict, like `TaskEventReader`:
/// anything it does not expect (a repeated key, invalid UTF-8, a number out
/// of range, a bad escape, deep nesting) makes it give up and return nil,
/// and `JSONValue.parse` decodes with `JSONDecoder`, so
/// the result, or the error, is always that decoder's.
struct JSONValueReader {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var i = 0

    /// Past this the reader leaves the text to `JSONDecoder` (which has
    /// limits of its own); workflow values are rarely a tenth as deep.
    static let maxDepth = 128

    private init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// The one value `bytes` hold (whitespace around it allowed), or nil to fall back.
    static func value(_ bytes: [UInt8]) -> JSONValue? {
        bytes.withUnsafeBufferPointer { buffer in
            var reader = JSONValueReader(buffer)
            reader.skipSpace()
            guard let value = reader.value(depth: 0) else { return nil }
            reader.skipSpace()
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
        case UInt8(ascii: "\""): return string().map { .string($0) }
        case UInt8(ascii: "t"): return takeWord("true") ? Optional(.bool(true)) : Optional.none
        case UInt8(ascii: "f"): return takeWord("false") ? Optional(.bool(false)) : Optional.none
        case UInt8(ascii: "n"): return takeWord("null") ? Optional(.null) : Optional.none
        default: return number().map { .number($0) }
        }
    }

    private mutating func object(depth: Int) -> JSONValue? {
        i += 1
        var members: [String: JSONValue] = [:]
        skipSpace()
        if take(UInt8(ascii: "}")) { return .object(members) }
        while true {
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\""), let key = string() else { return nil }
            skipSpace()
            guard take(UInt8(ascii: ":")) else { return nil }
            skipSpace()
            guard let member = value(depth: depth) else { return nil }
            // A repeated key: which one a decoder keeps is its own business.
            guard members.updateValue(member, forKey: key) == nil else { return nil }
            skipSpace()
            if take(UInt8(ascii: "}")) { return .object(members) }
            guard take(UInt8(ascii: ",")) else { return nil }
        }
    }

    private mutating func array(depth: Int) -> JSONValue? {
        i += 1
        var elements: [JSONValue] = []
        skipSpace()
        if take(UInt8(ascii: "]")) { return .array(elements) }
        while true {
            skipSpace()
            guard let element = value(depth: depth) else { return nil }
            elements.append(element)
            skipSpace()
            if take(UInt8(ascii: "]")) { return .array(elements) }
            guard take(UInt8(ascii: ",")) else { return nil }
        }
    }

    /// A string at `i` (its opening quote); nil for anything a strict reader refuses.
    private mutating func string() -> String? {
        i += 1
        var start = i
        var unescaped: [UInt8]?
        var ascii = true
        while i < bytes.count {
            let byte = bytes[i]
            if byte == UInt8(ascii: "\"") {
                let tail = UnsafeBufferPointer(rebasing: bytes[start..<i])
                i += 1
                if var out = unescaped {
                    out.append(contentsOf: tail)
                    return String(validating: out, as: UTF8.self)
                }
                return ascii ? String(decoding: tail, as: UTF8.self) : String(validating: tail, as: UTF8.self)
            }
            if byte < 0x20 { return nil }
            if byte >= 0x80 { ascii = false }
            if byte == UInt8(ascii: "\\") {
                // Moved out, not copied: one buffer for the whole string,
                // however many escapes it has.
                var out = unescaped ?? []
                unescaped = nil
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<i]))
                i += 1
                guard i < bytes.count else { return nil }
                let escape = bytes[i]
                i += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    guard var scalar = hex4() else { return nil }
                    if (0xD800...0xDBFF).contains(scalar) {
                        // A high surrogate must be followed by its low one.
                        guard take(UInt8(ascii: "\\")), take(UInt8(ascii: "u")), let low = hex4(),
                              (0xDC00...0xDFFF).contains(low) else { return nil }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        return nil
                    }
                    guard let unicode = Unicode.Scalar(scalar) else { return nil }
                    UTF8.encode(unicode) { out.append($0) }
                default:
                    return nil
                }
                unescaped = out
                start = i
                continue
            }
            i += 1
        }
        return nil
    }

    private mutating func hex4() -> UInt32? {
        guard i + 4 <= bytes.count else { return nil }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[i]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt32(digit)
            i += 1
        }
        return value
    }

    /// A JSON number (`-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?`).
    /// Plain integers of up to 15 digits are exact in a Double and built
    /// here; others go through the standard library's correctly rounded
    /// parser, as `JSONDecoder`'s do. Out of range (infinite): nil.
    private mutating func number() -> Double? {
        let start = i
        let negative = take(UInt8(ascii: "-"))
        let intStart = i
        var integer: Int64 = 0
        while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) {
            if i - intStart < 15 { integer = integer * 10 + Int64(bytes[i] - UInt8(ascii: "0")) }
            i += 1
        }
        let intDigits = i - intStart
        guard intDigits >= 1, !(intDigits > 1 && bytes[intStart] == UInt8(ascii: "0")) else { return nil }
        var plain = intDigits <= 15
        // Any digit but 0 before the exponent: the number is not zero.
        var nonZero = bytes[intStart..<i].contains { $0 != UInt8(ascii: "0") }
        if take(UInt8(ascii: ".")) {
            let fraction = i
            guard digits() else { return nil }
            nonZero = nonZero || bytes[fraction..<i].contains { $0 != UInt8(ascii: "0") }
            plain = false
        }
        if take(UInt8(ascii: "e")) || take(UInt8(ascii: "E")) {
            if !take(UInt8(ascii: "+")) { _ = take(UInt8(ascii: "-")) }
            guard digits() else { return nil }
            plain = false
        }
        if plain { return negative ? -Double(integer) : Double(integer) }
        // Out of range either way (infinite, or a number that is not zero
        // read as zero): the decoder refuses both.
        guard let value = Double(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)),
              value.isFinite, value != 0 || !nonZero else { return nil }
        return value
    }

    /// Skips a run of digits; whether there was one.
    private mutating func digits() -> Bool {
        let start = i
        while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) { i += 1 }
        return i > start
    }

    private mutating func skipSpace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    private mutating func take(_ byte: UInt8) -> Bool {
        guard i < bytes.count, bytes[i] == byte else { return false }
        i += 1
        return true
    }

    private mutating func takeWord(_ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard i + count <= bytes.count else { return false }
        let matches = word.withUTF8Buffer { w in (0..<count).allSatisfy { bytes[i + $0] == w[$0] } }
        if matches { i += count }
        return matches
    }
}
