import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// TCP sockets on 127.0.0.1, for the tests' own clients and servers.
enum LoopbackSocket {
    /// A socket connected to 127.0.0.1:`port`; nil if it could not connect (errno says why).
    static func connected(to port: Int) -> Int32? {
        open(port) { fd, address, size in connect(fd, address, size) }
    }

    /// A socket bound to 127.0.0.1:`port` (reusing a port in TIME_WAIT); nil if it is taken.
    static func bound(to port: Int) -> Int32? {
        open(port) { fd, address, size in
            var yes: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
            return bind(fd, address, size)
        }
    }

    private static func open(_ port: Int, _ use: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { use(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            let saved = errno
            close(fd)
            errno = saved
            return nil
        }
        return fd
    }
}
