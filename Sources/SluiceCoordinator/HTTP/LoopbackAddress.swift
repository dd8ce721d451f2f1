import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Whether a host the API would listen on is loopback only, decided from the
/// addresses it resolves to, never from how its name is spelled
/// (`127.evil.example` is a name like any other).
enum LoopbackAddress {
    /// True when `host` is an IPv4 address in 127.0.0.0/8 or `::1`, or a
    /// name that resolves to such addresses only. A name that does not
    /// resolve is not loopback.
    static func isLoopback(_ host: String) -> Bool {
        if let literal = literal(host) { return literal }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return false }
        defer { freeaddrinfo(first) }
        var any = false
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            defer { cursor = info.pointee.ai_next }
            guard let address = info.pointee.ai_addr else { continue }
            switch Int32(address.pointee.sa_family) {
            case AF_INET:
                let ip = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt32(bigEndian: $0.pointee.sin_addr.s_addr) }
                guard ip >> 24 == 127 else { return false }
            case AF_INET6:
                let bytes = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                    withUnsafeBytes(of: pointer.pointee.sin6_addr) { Array($0) }
                }
                guard isIPv6Loopback(bytes) else { return false }
            default:
                return false
            }
            any = true
        }
        return any
    }

    /// For an IP literal, whether it is loopback; nil for a name.
    private static func literal(_ host: String) -> Bool? {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 { return isIPv6Loopback(withUnsafeBytes(of: v6) { Array($0) }) }
        return nil
    }

    /// `::1`, or an IPv4-mapped loopback address (`::ffff:127.x.y.z`).
    private static func isIPv6Loopback(_ bytes: [UInt8]) -> Bool {
        guard bytes.count == 16 else { return false }
        if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }
        return bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff && bytes[12] == 127
    }
}
