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

    @Test("strings are written as JSON literals that read back the same", arguments: [
        "", "plain", "a \"quoted\" \\ path\\", "line\nbreak\r\ttab", "\u{01}\u{1f}\u{7f}", "Grüße 🚀", "\"", "end\\",
        String(repeating: "x", count: 300) + "\u{0}",
    ])
    func strings(_ text: String) throws {
        var bytes: [UInt8] = []
        JSONText.appendString(text, to: &bytes)
        #expect(JSONValidator.isValid(bytes))
        let back = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) as? String
        #expect(back == text)
        // Control characters never appear raw.
        #expect(!bytes.contains { $0 < 0x20 })
    }

    @Test("integers are written in place, signs and extremes included", arguments: [Int64(0), 7, -7, 1_700_000_000_123, .max, .min])
    func integers(_ value: Int64) throws {
        var w = JSONObjectWriter()
        w.field("n", value)
        w.field("s", "x")
        let bytes = w.finish()
        #expect(String(decoding: bytes, as: UTF8.self) == #"{"n":\#(value),"s":"x"}"#)
        #expect(JSONValidator.isValid(bytes))
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
