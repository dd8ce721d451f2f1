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
    /// Version 4: 122 random bits (task ids).
    package static func random() -> String {
        var bytes = randomBytes()
        bytes.6 = (bytes.6 & 0x0F) | 0x40
        return format(bytes)
    }

    /// Version 7 (RFC 9562): the Unix time in milliseconds in the first 48
    /// bits (big-endian), 74 random bits after it (run ids: ids made
    /// together sort together, so they share the stores' index pages).
    package static func timeOrdered(milliseconds: Int64) -> String {
        var bytes = randomBytes()
        let time = UInt64(max(0, milliseconds))
        withUnsafeMutableBytes(of: &bytes) { b in
            for i in 0..<6 { b[i] = UInt8(truncatingIfNeeded: time >> (40 - 8 * UInt64(i))) }
        }
        bytes.6 = (bytes.6 & 0x0F) | 0x70
        return format(bytes)
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
