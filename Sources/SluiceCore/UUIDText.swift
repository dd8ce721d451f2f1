/// UUIDs as lowercase text, drawn from the system generator directly
/// (Foundation's `UUID()` opened /dev/urandom for each one, a measurable
/// cost per enqueue).
package enum UUIDText {
    /// Version 4: 122 random bits (task ids).
    package static func random() -> String {
        var bytes = randomBytes()
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        return format(bytes)
    }

    /// Version 7 (RFC 9562): the Unix time in milliseconds in the first 48
    /// bits (big-endian), 74 random bits after it (run ids: ids made
    /// together sort together, so they share the stores' index pages).
    package static func timeOrdered(milliseconds: Int64) -> String {
        var bytes = randomBytes()
        let time = UInt64(max(0, milliseconds))
        for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: time >> (40 - 8 * UInt64(i))) }
        bytes[6] = (bytes[6] & 0x0F) | 0x70
        return format(bytes)
    }

    /// 16 random bytes with the RFC 9562 variant bits (10) set.
    private static func randomBytes() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64, low = generator.next() as UInt64
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 {
            bytes[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i)))
            bytes[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i)))
        }
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return bytes
    }

    private static func format(_ bytes: [UInt8]) -> String {
        let hex = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(36)
        for (i, byte) in bytes.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { out.append(UInt8(ascii: "-")) }
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
