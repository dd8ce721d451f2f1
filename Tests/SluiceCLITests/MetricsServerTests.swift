@testable import SluiceWorkerProcess
import Testing

@Suite("The metrics endpoint's answers (in process, no socket)")
struct MetricsServerTests {
    let metrics: @Sendable () -> [UInt8] = { Array("sluice_up 1\n".utf8) }

    func answer(_ request: String) -> String {
        String(decoding: MetricsServer.response(toHead: Array(request.utf8), metrics: metrics), as: UTF8.self)
    }

    @Test("GET and HEAD of /metrics and /healthz, with or without a query")
    func served() {
        let get = answer("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(get.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(get.contains("Content-Type: text/plain; version=0.0.4\r\n"))
        #expect(get.contains("Content-Length: 12\r\n"))
        #expect(get.hasSuffix("\r\n\r\nsluice_up 1\n"))
        let head = answer("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n")
        #expect(head.hasPrefix("HTTP/1.1 200 OK\r\n") && head.contains("Content-Length: 12\r\n") && head.hasSuffix("\r\n\r\n"),
                "HEAD: the length of the body, not the body")
        #expect(answer("GET /healthz HTTP/1.1\r\n\r\n").hasSuffix("\r\n\r\nok\n"))
    }

    @Test("unknown paths, other methods and malformed heads are refused, each with its status")
    func refused() {
        #expect(answer("GET / HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 404 "))
        let post = answer("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        #expect(post.hasPrefix("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD\r\n"))
        for bad in ["", "hello\r\n\r\n", "GET /metrics\r\n\r\n", "GET /metrics HTTP/2.0\r\n\r\n",
                    "GET /metrics HTTP/1.1\r\nHost: x\r\n", "GET  /metrics HTTP/1.1 extra\r\n\r\n"] {
            #expect(answer(bad).hasPrefix("HTTP/1.1 400 "), "\(bad.debugDescription)")
        }
    }

    @Test("a duration in progress messages has one decimal, as %.1f writes it")
    func oneDecimal() {
        #expect(BuiltinTasks.oneDecimal(0) == "0.0")
        #expect(BuiltinTasks.oneDecimal(0.25) == "0.2")
        #expect(BuiltinTasks.oneDecimal(2) == "2.0")
        #expect(BuiltinTasks.oneDecimal(86_400) == "86400.0")
    }
}
