/// The byte-level pieces of the strict JSON readers (`TaskEventReader`
/// here, `JSONValueReader` in SluiceWorkflow): whitespace, literals,
/// strings and numbers read straight from the bytes. Each returns nil (or
/// false) for anything a strict reader refuses, and the reader then leaves
/// the text to `JSONDecoder`, so what they accept must read as that decoder
/// reads it.
package struct JSONScanner {
    package let bytes: UnsafeBufferPointer<UInt8>
    package var i = 0

    package init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// Whether every byte was read.
    package var atEnd: Bool { i == bytes.count }

    /// A string at `i` (from its opening quote); nil for anything a strict reader refuses.
    package mutating func string() -> String? {
        guard take(UInt8(ascii: "\"")) else { return nil }
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

    package mutating func hex4() -> UInt32? {
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
    package mutating func number() -> Double? {
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
    package mutating func digits() -> Bool {
        let start = i
        while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) { i += 1 }
        return i > start
    }

    package mutating func skipSpace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    package mutating func take(_ byte: UInt8) -> Bool {
        guard i < bytes.count, bytes[i] == byte else { return false }
        i += 1
        return true
    }

    package mutating func takeWord(_ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard i + count <= bytes.count else { return false }
        let matches = word.withUTF8Buffer { w in (0..<count).allSatisfy { bytes[i + $0] == w[$0] } }
        if matches { i += count }
        return matches
    }
}
