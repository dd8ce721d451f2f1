/// JSON text helpers shared by the hand-written JSON writers.
public enum JSONText {
    /// Appends `s` as a JSON string literal (quotes and escapes included):
    /// measured, then written in place (``writeString(_:to:)``).
    public static func appendString(_ s: String, to bytes: inout [UInt8]) {
        let start = bytes.count
        let count = literalCount(s)
        bytes.append(contentsOf: repeatElement(0, count: count))
        bytes.withUnsafeMutableBufferPointer { _ = writeString(s, to: $0.baseAddress! + start) }
    }

    /// The bytes `s` takes as a JSON string literal, quotes and escapes included.
    public static func literalCount(_ s: String) -> Int {
        var s = s
        return s.withUTF8 { utf8 in
            var count = utf8.count + 2
            var i = nextEscape(utf8, from: 0)
            while i < utf8.count {
                count += escapedCount(utf8[i]) - 1
                i = nextEscape(utf8, from: i + 1)
            }
            return count
        }
    }

    /// Writes `s` as a JSON string literal at `out`, which has room for
    /// ``literalCount(_:)`` bytes; returns the bytes written.
    static func writeString(_ s: String, to out: UnsafeMutablePointer<UInt8>) -> Int {
        var s = s
        return s.withUTF8 { utf8 in
            out[0] = quote
            var written = 1
            var start = 0
            while true {
                let end = nextEscape(utf8, from: start)
                if end > start, let base = utf8.baseAddress {
                    (out + written).update(from: base + start, count: end - start)
                    written += end - start
                }
                guard end < utf8.count else { break }
                written += writeEscaped(utf8[end], to: out + written)
                start = end + 1
            }
            out[written] = quote
            return written + 1
        }
    }

    /// The index of the first byte from `start` on that needs an escape, or
    /// the count. Eight bytes are looked at in one word while none does: the
    /// ids and names of events are scanned twice per event (measured, then written).
    private static func nextEscape(_ utf8: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        var i = start
        if let base = utf8.baseAddress {
            let ones: UInt64 = 0x0101_0101_0101_0101
            let highs: UInt64 = 0x8080_8080_8080_8080
            // Nonzero when some byte of `word` is zero (borrows may mark bytes after it too: only used as a yes/no).
            func hasZeroByte(_ word: UInt64) -> Bool { (word &- ones) & ~word & highs != 0 }
            while i + 8 <= utf8.count {
                let word = UInt64(littleEndian: UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self))
                let control = (word &- ones &* 0x20) & ~word & highs != 0
                if control || hasZeroByte(word ^ (ones &* UInt64(quote))) || hasZeroByte(word ^ (ones &* UInt64(backslash))) { break }
                i += 8
            }
        }
        while i < utf8.count {
            let byte = utf8[i]
            if byte < 0x20 || byte == quote || byte == backslash { return i }
            i += 1
        }
        return i
    }

    private static let quote = UInt8(ascii: "\"")
    private static let backslash = UInt8(ascii: "\\")

    /// Bytes of the escape sequence of a byte that needs one.
    private static func escapedCount(_ byte: UInt8) -> Int {
        switch byte {
        case quote, backslash, 0x0A, 0x0D, 0x09: 2
        default: 6
        }
    }

    private static func writeEscaped(_ byte: UInt8, to out: UnsafeMutablePointer<UInt8>) -> Int {
        out[0] = backslash
        switch byte {
        case quote, backslash: out[1] = byte
        case 0x0A: out[1] = UInt8(ascii: "n")
        case 0x0D: out[1] = UInt8(ascii: "r")
        case 0x09: out[1] = UInt8(ascii: "t")
        default:
            out[1] = UInt8(ascii: "u")
            out[2] = UInt8(ascii: "0")
            out[3] = UInt8(ascii: "0")
            out[4] = hex(byte >> 4)
            out[5] = hex(byte & 0xF)
            return 6
        }
        return 2
    }

    private static func hex(_ nibble: UInt8) -> UInt8 { nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10 }
}
