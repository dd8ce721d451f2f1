import Foundation
@testable import SluiceCore
import Testing

@Suite("JSON validation and event encoding")
struct JSONTests {
    @Test("valid JSON values pass", arguments: [
        "{}", "[]", "0", "-1.5e+10", "\"s\"", "true", "false", "null", " { \"a\" : [1, 2, {\"b\": null}] } ",
        #"{"esc":"\"\\\/\b\f\n\r\t\u00e9"}"#, "[0.5,-0,1E3]", "\"Grüße\"",
    ])
    func valid(_ text: String) {
        #expect(JSONValidator.isValid(Array(text.utf8)))
        // Agrees with Foundation.
        #expect((try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) != nil)
    }

    @Test("invalid JSON fails", arguments: [
        "", " ", "{", "}", "[1,]", "{\"a\":}", "{a:1}", "01", "1.", ".5", "-", "tru", "nul", "\"unterminated",
        "\"bad \\x escape\"", "[1] [2]", "{\"a\" 1}", "\"\u{01}\"", "NaN", "'single'",
    ])
    func invalid(_ text: String) {
        #expect(!JSONValidator.isValid(Array(text.utf8)))
    }

    @Test("deep nesting is refused, not a stack overflow")
    func deep() {
        #expect(!JSONValidator.isValid(Array((String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)).utf8)))
    }

    @Test("events written by hand decode back, escapes included")
    func eventRoundTrip() throws {
        let task = TaskEnvelope(id: "id\"1", name: "n\\ame", queue: "q", arguments: [], attempt: 2,
                                workflowRunID: "run", workflowStep: "step")
        var event = TaskEvent(kind: .retrying, task: task, at: Date(epochMilliseconds: 1_800_000_000_123), worker: "h:1")
        event.errorType = "t"
        event.errorMessage = "line1\nline2\t\u{01}"
        event.nextDelayMilliseconds = 500
        event.durationMilliseconds = 1.25
        event.waitMilliseconds = 12.5
        event.result = #"{"a":[1,2]}"#
        event.deadReason = .maxAttempts
        let bytes = event.jsonBytes()
        #expect(JSONValidator.isValid(bytes))
        #expect(try TaskEvent.decode(bytes) == event)
    }
}
