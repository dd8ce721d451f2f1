#if canImport(Glibc)
import Glibc
#endif
public import Logging
public import ServiceLifecycle
import SluiceSpawn

/// Serves `GET /metrics` (Prometheus text) and `GET /healthz` over HTTP/1.1
/// on one thread of its own, with plain sockets: a worker needs no HTTP
/// framework (and no event loops) for a scrape every few seconds.
///
/// One request per connection (`Connection: close`), one connection at a
/// time; a client gets 5 s in all to send its request head (at most 8 KiB),
/// 5 s in all to take the answer and 1 s of lingering close, so a slow or
/// silent one holds the next scrape back by 11 s at most.
public struct MetricsServer: Service {
    public let host: String
    public let port: Int
    let logger: Logger
    let metrics: @Sendable () -> [UInt8]

    public init(host: String, port: Int, logger: Logger, metrics: @escaping @Sendable () -> [UInt8]) {
        self.host = host
        self.port = port
        self.logger = logger
        self.metrics = metrics
    }

    public func run() async throws {
        let listener = try listen()
        var wake: [Int32] = [-1, -1]
        guard pipe(&wake) == 0 else {
            close(listener)
            throw CLIError("--metrics: pipe: \(String(cString: strerror(errno)))")
        }
        for fd in wake { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let (wakeRead, wakeWrite) = (wake[0], wake[1])
        let metrics = self.metrics, logger = self.logger
        do {
            try DetachedThread.start {
                Self.serve(listener: listener, stop: wakeRead, metrics: metrics, logger: logger)
                close(listener)
                close(wakeRead)
            }
        } catch {
            close(listener)
            close(wakeRead)
            close(wakeWrite)
            throw CLIError("--metrics: cannot start its thread: \(error)")
        }
        logger.debug("metrics endpoint listening", metadata: ["address": "\(host):\(port)"])
        // Until the process stops (or this service is cancelled).
        try? await gracefulShutdown()
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
        close(wakeWrite)
    }

    /// A listening socket on host:port (a name or an IPv4 or IPv6 address).
    private func listen() throws -> Int32 {
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &found)
        guard status == 0, let first = found else {
            throw CLIError("--metrics: cannot resolve \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(first) }
        var lastError: Int32 = 0
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let info = next {
            next = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.pointee.ai_protocol)
            guard fd >= 0 else { lastError = errno; continue }
            var one: Int32 = 1
            _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 && Glibc.listen(fd, 64) == 0 {
                return fd
            }
            lastError = errno
            close(fd)
        }
        throw CLIError("--metrics: cannot listen on \(host):\(port): \(String(cString: strerror(lastError)))")
    }

    /// Accepts and answers connections until `stop` becomes readable.
    private static func serve(listener: Int32, stop: Int32, metrics: () -> [UInt8], logger: Logger) {
        var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0), pollfd(fd: stop, events: Int16(POLLIN), revents: 0)]
        while true {
            fds[0].revents = 0
            fds[1].revents = 0
            let ready = poll(&fds, 2, -1)
            if ready < 0 {
                if errno == EINTR { continue }
                logger.error("metrics endpoint stopped", metadata: ["error": "poll: \(String(cString: strerror(errno)))"])
                return
            }
            if fds[1].revents != 0 { return }
            guard fds[0].revents != 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else {
                // Out of descriptors or memory: the connection stays queued and
                // poll would return at once, again and again. Wait a second
                // (or for the stop) before trying again.
                if [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(errno) {
                    var stopOnly = pollfd(fd: stop, events: Int16(POLLIN), revents: 0)
                    if poll(&stopOnly, 1, 1000) > 0 { return }
                }
                continue  // otherwise the peer left already
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            answer(client, metrics: metrics)
            close(client)
        }
    }

    /// Waits until `client` can be read (or written) before `deadline`.
    private static func wait(_ client: Int32, for events: Int32, until deadline: ContinuousClock.Instant) -> Bool {
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { return false }
            let ms = Int32(min(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1, 10_000))
            var fd = pollfd(fd: client, events: Int16(events), revents: 0)
            let n = poll(&fd, 1, ms)
            if n > 0 { return true }
            if n < 0 && errno != EINTR { return false }
        }
    }

    /// Reads one request head and writes its answer: 5 s in all for the
    /// head, 5 s for the answer, 1 s of lingering close.
    private static func answer(_ client: Int32, metrics: () -> [UInt8]) {
        var head: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 2048)
        let end: [UInt8] = Array("\r\n\r\n".utf8)
        let headDeadline = ContinuousClock.now + .seconds(5)
        while head.count < 8192 && head.firstRange(of: end) == nil {
            guard wait(client, for: Int32(POLLIN), until: headDeadline) else { break }
            let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            guard n > 0 else { return }  // gone
            head += buffer[0..<n]
        }
        let response = Self.response(toHead: head, metrics: metrics)
        var sent = 0
        let sendDeadline = ContinuousClock.now + .seconds(5)
        while sent < response.count {
            guard wait(client, for: Int32(POLLOUT), until: sendDeadline) else { return }
            let n = response.withUnsafeBytes { send(client, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            guard n > 0 else { return }
            sent += n
        }
        // A lingering close: what the client still sends (the rest of a head
        // too long to read) is read and dropped for up to 1 s, so that closing
        // with unread input does not reset the connection under the answer.
        _ = shutdown(client, Int32(SHUT_WR))
        let lingerEnd = ContinuousClock.now + .seconds(1)
        var drained = 0
        while drained < 1 << 20 && wait(client, for: Int32(POLLIN), until: lingerEnd) {
            let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            guard n > 0 else { break }
            drained += n
        }
    }

    /// The whole answer to a request head: status line, headers and body.
    static func response(toHead head: [UInt8], metrics: () -> [UInt8]) -> [UInt8] {
        let firstLine = head.split(separator: UInt8(ascii: "\r"), maxSplits: 1, omittingEmptySubsequences: false).first ?? []
        let parts = firstLine.split(separator: UInt8(ascii: " "))
        guard head.firstRange(of: Array("\r\n\r\n".utf8)) != nil, parts.count == 3, parts[2].starts(with: Array("HTTP/1.".utf8)) else {
            return message(400, "Bad Request", "a request line and headers, ending in an empty line, were expected\n")
        }
        let method = String(decoding: parts[0], as: UTF8.self)
        var path = String(decoding: parts[1], as: UTF8.self)
        if let query = path.firstIndex(of: "?") { path = String(path[..<query]) }
        guard path == "/metrics" || path == "/healthz" else { return message(404, "Not Found", "not found: try /metrics\n") }
        guard method == "GET" || method == "HEAD" else {
            return message(405, "Method Not Allowed", "only GET and HEAD\n", extra: "Allow: GET, HEAD\r\n")
        }
        let body = path == "/metrics" ? metrics() : Array("ok\n".utf8)
        let type = path == "/metrics" ? "text/plain; version=0.0.4" : "text/plain; charset=utf-8"
        var out = Array("HTTP/1.1 200 OK\r\nContent-Type: \(type)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8)
        if method == "GET" { out += body }
        return out
    }

    private static func message(_ status: Int, _ reason: String, _ text: String, extra: String = "") -> [UInt8] {
        Array("HTTP/1.1 \(status) \(reason)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(text.utf8.count)\r\n\(extra)Connection: close\r\n\r\n\(text)".utf8)
    }
}

