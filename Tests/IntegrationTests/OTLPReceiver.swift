import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A small OTLP/HTTP receiver for tests: accepts `POST /v1/traces` bodies in
/// OTLP's JSON encoding (`OTEL_EXPORTER_OTLP_PROTOCOL=http/json`), answers
/// 200, and keeps the spans. Connections are kept alive, as exporters expect.
final class OTLPReceiver: Sendable {
    struct Span: Sendable, Hashable {
        var service: String
        var name: String
        var traceID: String
        var spanID: String
        var parentSpanID: String?
        var attributes: [String: String]
    }

    let port: Int
    private let listener: Int32
    private let received = Mutex<[Span]>([])
    private let requests = Mutex(0)
    /// Connections being served, closed by ``stop()``.
    private let connections = Mutex<Set<Int32>>([])

    var endpoint: String { "http://127.0.0.1:\(port)" }
    var spans: [Span] { received.withLock { $0 } }
    var requestCount: Int { requests.withLock { $0 } }

    init() throws {
        port = CoordinatorProcess.freePort()
        guard let fd = LoopbackSocket.bound(to: port) else {
            throw LoopbackHTTP.Failure(description: "bind 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
        guard listen(fd, 16) == 0 else {
            close(fd)
            throw LoopbackHTTP.Failure(description: "listen on 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
        listener = fd
        DispatchQueue.global().async { [self] in
            while true {
                let connection = accept(fd, nil, nil)
                if connection < 0 { return }  // closed by stop()
                self.connections.withLock { _ = $0.insert(connection) }
                DispatchQueue.global().async { self.serve(connection) }
            }
        }
    }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        // Kept-alive connections: their readers see the end and return.
        connections.withLock { for fd in $0 { shutdown(fd, Int32(SHUT_RDWR)) } }
    }

    /// Reads requests on one connection until the client closes it.
    private func serve(_ fd: Int32) {
        defer {
            connections.withLock { _ = $0.remove(fd) }
            close(fd)
        }
        var pending = Data()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            // A request: head, then Content-Length bytes.
            while pending.range(of: Data("\r\n\r\n".utf8)) == nil {
                let n = recv(fd, &buffer, buffer.count, 0)
                if n <= 0 { return }
                pending.append(contentsOf: buffer[0..<n])
            }
            let headEnd = pending.range(of: Data("\r\n\r\n".utf8))!
            let head = String(decoding: pending[..<headEnd.lowerBound], as: UTF8.self)
            let length = head.components(separatedBy: "\r\n").compactMap { line -> Int? in
                let parts = line.split(separator: ":", maxSplits: 1)
                guard parts.count == 2, parts[0].lowercased() == "content-length" else { return nil }
                return Int(parts[1].trimmingCharacters(in: .whitespaces))
            }.first ?? 0
            while pending.count - headEnd.upperBound < length {
                let n = recv(fd, &buffer, buffer.count, 0)
                if n <= 0 { return }
                pending.append(contentsOf: buffer[0..<n])
            }
            let body = pending[headEnd.upperBound..<(headEnd.upperBound + length)]
            pending = Data(pending[(headEnd.upperBound + length)...])
            requests.withLock { $0 += 1 }
            if head.hasPrefix("POST /v1/traces") { record(Data(body)) }
            let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            _ = answer.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        }
    }

    /// The spans of an ExportTraceServiceRequest in JSON.
    private func record(_ body: Data) {
        guard let root = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else { return }
        var spans: [Span] = []
        for resourceSpans in root["resourceSpans"] as? [[String: Any]] ?? [] {
            let resource = Self.attributes((resourceSpans["resource"] as? [String: Any])?["attributes"])
            for scope in resourceSpans["scopeSpans"] as? [[String: Any]] ?? [] {
                for span in scope["spans"] as? [[String: Any]] ?? [] {
                    guard let trace = Self.hex(span["traceId"]), let id = Self.hex(span["spanId"]) else { continue }
                    spans.append(Span(service: resource["service.name"] ?? "", name: span["name"] as? String ?? "",
                                      traceID: trace, spanID: id, parentSpanID: Self.hex(span["parentSpanId"]),
                                      attributes: Self.attributes(span["attributes"])))
                }
            }
        }
        received.withLock { $0 += spans }
    }

    /// An id as hex: OTLP/JSON writes hex; protobuf's JSON writes base64.
    private static func hex(_ value: Any?) -> String? {
        guard let text = value as? String, !text.isEmpty else { return nil }
        if (text.count == 32 || text.count == 16), text.allSatisfy(\.isHexDigit) { return text.lowercased() }
        guard let data = Data(base64Encoded: text), !data.allSatisfy({ $0 == 0 }) else { return nil }
        return data.map { String(format: "%02x", $0) }.joined()
    }

    private static func attributes(_ value: Any?) -> [String: String] {
        var result: [String: String] = [:]
        for item in value as? [[String: Any]] ?? [] {
            guard let key = item["key"] as? String, let value = item["value"] as? [String: Any] else { continue }
            if let s = value["stringValue"] as? String { result[key] = s } else if let i = value["intValue"] { result[key] = "\(i)" }
        }
        return result
    }
}
