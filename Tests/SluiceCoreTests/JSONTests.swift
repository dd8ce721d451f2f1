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
        // The measure the object writer sizes its buffer by, and its writer, agree with the appending one.
        #expect(JSONText.literalCount(text) == bytes.count)
        let written = [UInt8](unsafeUninitializedCapacity: bytes.count) { buffer, count in
            count = JSONText.writeString(text, to: buffer.baseAddress!)
        }
        #expect(written == bytes)
    }

    @Test("a byte that needs an escape is found wherever it stands in the words the scan reads")
    func escapesAtEveryPosition() {
        for special in ["\"", "\\", "\n", "\u{01}", "\u{1f}"] {
            for length in 1...24 {
                for position in 0..<length {
                    var characters = Array(repeating: "a", count: length)
                    characters[position] = special
                    // Bytes just above the escaped ranges around it (space, '#', ']').
                    if position > 0 { characters[position - 1] = " " }
                    if position + 1 < length { characters[position + 1] = position % 2 == 0 ? "#" : "]" }
                    let text = characters.joined()
                    let expected = Self.referenceLiteral(text)
                    var appended: [UInt8] = []
                    JSONText.appendString(text, to: &appended)
                    #expect(appended == expected, "\(text.debugDescription)")
                    #expect(JSONText.literalCount(text) == expected.count, "\(text.debugDescription)")
                    let written = [UInt8](unsafeUninitializedCapacity: expected.count) { buffer, count in
                        count = JSONText.writeString(text, to: buffer.baseAddress!)
                    }
                    #expect(written == expected, "\(text.debugDescription)")
                }
            }
        }
    }

    /// A JSON string literal escaped byte by byte, as plainly as possible:
    /// what the writers, which skip over runs of plain bytes, must agree with.
    static func referenceLiteral(_ text: String) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "\"")]
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += Array(#"\""#.utf8)
            case UInt8(ascii: "\\"): out += Array(#"\\"#.utf8)
            case 0x0A: out += Array(#"\n"#.utf8)
            case 0x0D: out += Array(#"\r"#.utf8)
            case 0x09: out += Array(#"\t"#.utf8)
            case ..<0x20: out += Array(String(format: "\\u%04x", Int(byte)).utf8)
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
        return out
    }

    @Test("integers are written in place, signs and extremes included", arguments: [Int64(0), 7, -7, 1_700_000_000_123, .max, .min])
    func integers(_ value: Int64) throws {
        // Exactly the room the text needs: the writer must not need more than it said.
        let text = #"{"n":\#(value),"s":"x"}"#
        let bytes = JSONObjectWriter.bytes(capacity: text.utf8.count) { w in
            w.field("n", value)
            w.field("s", "x")
        }
        #expect(String(decoding: bytes, as: UTF8.self) == text)
        #expect(JSONValidator.isValid(bytes))
    }

    @Test("durations carried to the microsecond are written as the digits Swift's own formatting gives")
    func thousandths() throws {
        var g = SystemRandomNumberGenerator()
        let edges: [Double] = [0, 0.001, 0.01, 0.1, 0.5, 1, 1.25, 0.005, 0.05, 999_999_999_999.999, 123_456.789, 1e11 + 0.001]
        let random = (0..<5000).map { _ in (Double.random(in: 0...1e7, using: &g) * 1000).rounded() / 1000 }
        for value in edges + random + (edges + random).map(-) {
            let bytes = JSONObjectWriter.bytes(capacity: 2 + JSONObjectWriter.bytesPerField) { $0.field("d", value) }
            #expect(String(decoding: bytes, as: UTF8.self) == #"{"d":\#(value.description)}"#)
        }
    }

    @Test("doubles are written in their shortest form and read back the same; non-finite ones as 0", arguments: [
        0.0, -0.0, 1.25, -12.5, 1e-7, -Double.leastNonzeroMagnitude, -Double.leastNormalMagnitude,
        -Double.greatestFiniteMagnitude, 123_456.789, -0.00012345678901234567, .nan, .infinity,
    ])
    func doubles(_ value: Double) throws {
        let bytes = JSONObjectWriter.bytes(capacity: 2 + JSONObjectWriter.bytesPerField) { $0.field("durationMilliseconds", value) }
        #expect(JSONValidator.isValid(bytes))
        // Read by Swift's own parser: Foundation's JSON reader rounds some long fractions.
        let text = String(decoding: bytes, as: UTF8.self)
        let prefix = #"{"durationMilliseconds":"#
        #expect(text.hasPrefix(prefix) && text.hasSuffix("}"))
        let back = try #require(Double(String(text.dropFirst(prefix.count).dropLast())))
        #expect(back == (value.isFinite ? value : 0))
        #expect(back.sign == (value.isFinite ? value.sign : .plus))
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

    @Test("an event of the longest fields and strings that are all escapes fits the room measured for it")
    func eventAtItsLimits() throws {
        let escapes = String(repeating: "\u{01}\"\\\n", count: 500)
        var task = TaskEnvelope(id: escapes, name: escapes, queue: escapes, arguments: [], attempt: .max,
                                workflowRunID: escapes, workflowStep: escapes)
        task.track = true
        var event = TaskEvent(kind: .succeeded, task: task, at: Date(epochMilliseconds: -1_000_000_000_123), worker: escapes)
        event.result = escapes
        event.errorType = escapes
        event.errorMessage = escapes
        event.progressMessage = escapes
        event.signature = escapes
        event.nextDelayMilliseconds = .min
        event.deadReason = DeadReason.allCases.max { $0.rawValue.utf8.count < $1.rawValue.utf8.count }
        event.durationMilliseconds = -Double.leastNormalMagnitude
        event.waitMilliseconds = -Double.greatestFiniteMagnitude
        event.progress = -0.00012345678901234567
        let bytes = event.jsonBytes()
        #expect(JSONValidator.isValid(bytes))
        #expect(try TaskEvent.decode(bytes) == event)
    }
}
