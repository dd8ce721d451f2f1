#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// UUIDs as lowercase text. The 16 random bytes come from one
/// `getentropy` call (Foundation's `UUID()` opened /dev/urandom for each
/// one; two `SystemRandomNumberGenerator` draws were two `getrandom`
/// syscalls), and the text is written in place: one allocation per id.
package enum UUIDText {
    /// Version 4: 122 random bits (reply queue names).
    package static func random() -> String {
        var bytes = randomBytes()
        bytes.6 = (bytes.6 & 0x0F) | 0x40
        return format(bytes)
    }

    /// Version 7 (RFC 9562): the Unix time in milliseconds in the first 48
    /// bits (big-endian), 74 random bits after it (run ids: ids made
    /// together sort together, so they share the stores' index pages; task
    /// ids: the id carries the enqueue time).
    package static func timeOrdered(milliseconds: Int64) -> String {
        var bytes = randomBytes()
        let time = UInt64(max(0, milliseconds))
        withUnsafeMutableBytes(of: &bytes) { b in
            for i in 0..<6 { b[i] = UInt8(truncatingIfNeeded: time >> (40 - 8 * UInt64(i))) }
        }
        bytes.6 = (bytes.6 & 0x0F) | 0x70
        return format(bytes)
    }

    /// The milliseconds of a version-7 UUID in canonical text (36
    /// characters, either case); nil for any other text.
    package static func milliseconds(ofTimeOrdered text: String) -> Int64? {
        var text = text
        return text.withUTF8 { b -> Int64? in
            guard b.count == 36, b[8] == UInt8(ascii: "-"), b[13] == UInt8(ascii: "-"), b[18] == UInt8(ascii: "-"),
                  b[23] == UInt8(ascii: "-"), b[14] == UInt8(ascii: "7") else { return nil }
            func digit(_ c: UInt8) -> Int64? {
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): Int64(c - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): Int64(c - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): Int64(c - UInt8(ascii: "A") + 10)
                default: nil
                }
            }
            // The RFC 9562 variant (10xx) and hex digits everywhere else.
            guard let variant = digit(b[19]), variant & 0xC == 0x8 else { return nil }
            var time: Int64 = 0
            for i in 0..<36 where i != 8 && i != 13 && i != 18 && i != 23 {
                guard let d = digit(b[i]) else { return nil }
                if i < 8 || (i > 8 && i < 13) { time = time << 4 | d }
            }
            return time
        }
    }

    private typealias Bytes = (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                               UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    /// 16 random bytes with the RFC 9562 variant bits (10) set.
    private static func randomBytes() -> Bytes {
        var bytes: Bytes = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        let filled = withUnsafeMutableBytes(of: &bytes) { getentropy($0.baseAddress, 16) == 0 }
        if !filled {
            // getentropy fails only without a kernel source of randomness (or
            // a seccomp filter refusing it): the standard generator then.
            var generator = SystemRandomNumberGenerator()
            withUnsafeMutableBytes(of: &bytes) { b in for i in 0..<16 { b[i] = generator.next() } }
        }
        bytes.8 = (bytes.8 & 0x3F) | 0x80
        return bytes
    }

    private static func format(_ bytes: Bytes) -> String {
        withUnsafeBytes(of: bytes) { b in
            String(unsafeUninitializedCapacity: 36) { out in
                let hex: StaticString = "0123456789abcdef"
                var o = 0
                hex.withUTF8Buffer { digits in
                    for i in 0..<16 {
                        if i == 4 || i == 6 || i == 8 || i == 10 {
                            out[o] = UInt8(ascii: "-")
                            o += 1
                        }
                        out[o] = digits[Int(b[i] >> 4)]
                        out[o + 1] = digits[Int(b[i] & 0x0F)]
                        o += 2
                    }
                }
                return o
            }
        }
    }
}
