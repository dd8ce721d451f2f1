import Foundation

/// Run ids: UUIDs of version 7 (RFC 9562), whose first 48 bits are the
/// Unix time in milliseconds and the rest random. Runs started together sit
/// together in the stores' indexes on the id: with random (version 4) ids
/// every start wrote a page somewhere in the SQLite index and the inputs
/// table, and a commit of a few hundred runs wrote twice the pages it does now.
enum TimeOrderedUUID {
    static func make(now: Date = Date()) -> String {
        var uuid = UUID().uuid  // random, with the variant bits set
        let milliseconds = UInt64(max(0, (now.timeIntervalSince1970 * 1000).rounded()))
        withUnsafeMutableBytes(of: &uuid) { bytes in
            for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: milliseconds >> (8 * UInt64(5 - i))) }
            bytes[6] = (bytes[6] & 0x0F) | 0x70
        }
        return UUID(uuid: uuid).uuidString.lowercased()
    }
}
