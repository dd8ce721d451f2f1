import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One HTTP/1.1 request to a server on 127.0.0.1, over a plain socket.
///
/// For chromedriver: it writes headers without a space after the colon
/// (`Content-Length:252`), which Foundation's URLSession on Linux (libcurl
/// underneath) refuses with "Failed writing header". The request runs on a
/// dispatch thread, so the blocking socket calls stay off the concurrency pool.
enum LoopbackHTTP {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// A response: redirects are not followed (tests look at them).
    struct Response: Sendable {
        var status: Int
        var headers: [(name: String, value: String)]
        var body: Data

        /// The first value of a header (names compared without case).
        func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name.lowercased() }?.value }
        func all(_ name: String) -> [String] { headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value) }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    static func send(port: Int, method: String, path: String, body: Data?, timeout: Double) async throws -> (status: Int, body: Data) {
        let response = try await request(port: port, method: method, path: path, body: body, timeout: timeout)
        return (response.status, response.body)
    }

    static func request(port: Int, method: String, path: String, headers: [(String, String)] = [], body: Data?,
                        contentType: String = "application/json; charset=utf-8", timeout: Double) async throws -> Response {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result {
                    try exchange(port: port, method: method, path: path, headers: headers, body: body, contentType: contentType, timeout: timeout)
                })
            }
        }
    }

    private static func exchange(port: Int, method: String, path: String, headers extra: [(String, String)], body: Data?,
                                 contentType: String, timeout: Double) throws -> Response {
        guard let fd = LoopbackSocket.connected(to: port) else {
            throw Failure(description: "connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var limit = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))

        // A Host among `extra` replaces ours (a test of what a server makes of it).
        let host = extra.first { $0.0.lowercased() == "host" }?.1 ?? "127.0.0.1:\(port)"
        var request = Data("\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\nAccept: application/json\r\n".utf8)
        for (name, value) in extra where name.lowercased() != "host" { request += Data("\(name): \(value)\r\n".utf8) }
        if let body {
            request += Data("Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
            request += body
        } else {
            request += Data("Content-Length: 0\r\n\r\n".utf8)
        }
        try request.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let n = Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                guard n > 0 else { throw Failure(description: "send: \(String(cString: strerror(errno)))") }
                sent += n
            }
        }

        // Read the head, then the body by its length (or to the end).
        var received = Data()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var headEnd: Range<Data.Index>?
        var status = 0
        var length: Int?
        var headers: [(name: String, value: String)] = []
        while true {
            if headEnd == nil, let end = received.range(of: Data("\r\n\r\n".utf8)) {
                headEnd = end
                let lines = String(decoding: received[..<end.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
                let statusParts = lines.first?.split(separator: " ") ?? []
                status = statusParts.count > 1 ? Int(statusParts[1]) ?? 0 : 0
                for line in lines.dropFirst() {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
                    if line[..<colon].lowercased() == "content-length" {
                        length = Int(line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
                    }
                }
            }
            if let headEnd, let length, received.count - headEnd.upperBound >= length {
                return Response(status: status, headers: headers, body: received[headEnd.upperBound..<(headEnd.upperBound + length)])
            }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 {
                received.append(contentsOf: buffer[0..<n])
            } else if n == 0 {
                guard let headEnd else { throw Failure(description: "the connection closed before a response") }
                return Response(status: status, headers: headers, body: received[headEnd.upperBound...])
            } else {
                throw Failure(description: "no answer from 127.0.0.1:\(port) within \(timeout) s (\(String(cString: strerror(errno))))")
            }
        }
    }
}
