import Foundation
@testable import SluiceWorkflow
import Testing

/// The hand-written value reader against Foundation's decoder: it must give
/// the decoder's value, or give up (and `JSONValue.parse` asks the decoder).
@Suite("JSON value reader")
struct JSONValueReaderTests {
    static func decoded(_ text: String) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    /// Texts the reader must read, each to what the decoder gives.
    static let readable = [
        "null", "true", "false", "0", "-0", "7", "-12", "999999999999999", "1234567890123456789", "-9007199254740993",
        "0.1", "-2.5e-3", "1E10", "6.02214076e+23", "1.7976931348623157e308", "5e-324",
        "\"\"", "\"plain\"", "\"with \\\"quotes\\\" and \\\\ and \\/\"", "\"tab\\tline\\nfeed\\r\\b\\f\"", "\"\\u0001\\u001F\\u0000\"",
        "\"é ü ß 日本語\"", "\"\\u00e9\\u65E5\"", "\"emoji 🦩 and \\ud834\\udd1e\"",
        "[]", "{}", " [ 1 , \"a\" , null , true , { } ] ", "{\"a\":{\"b\":[[],[{}]]},\"c\":-1.5}",
        "{\"items\": [1, 2.5, \"x\"], \"n\": null, \"nested\": {\"ok\": false}}",
        "\t\n\r {\"k\" : \"v\"}\n", "0e999", "-0.0e-500", "0.000", "1e-300",
        // Many escapes in one string.
        "\"" + String(repeating: "a\\\"b\\u00e9\\n", count: 2_000) + "\"",
    ]

    /// Texts the reader leaves to the decoder (which reads some and refuses others).
    /// (Compared with `Optional<JSONValue>.none`: a bare `nil` would be `JSONValue.null`.)
    static let refused = [
        "", " ", "nul", "tru", "01", "-", "1.", ".5", "1e", "+1", "1e400", "-1e400", "NaN", "Infinity",
        "1e-400", "-1e-400", "2e-324", "[1e-400]", "0.0000001e-400",
        "\"open", "\"bad \\x escape\"", "\"\\ud834 lone high\"", "\"\\udd1e lone low\"", "\"\\u12G4\"", "\"raw \u{01} control\"",
        "[1,]", "[1 2]", "{\"a\" 1}", "{\"a\":1,}", "{a:1}", "{\"a\":1,\"a\":2}", "[", "{", "1 2", "[]]", "\"x\"y",
        String(repeating: "[", count: 200) + String(repeating: "]", count: 200),
    ]

    @Test("usual JSON reads to the decoder's value")
    func readsLikeTheDecoder() throws {
        for text in Self.readable {
            let fast = try #require(JSONValueReader.value(Array(text.utf8)), "the reader gave up on \(text)")
            let slow = try #require(Self.decoded(text), "the decoder refused \(text)")
            #expect(fast == slow, "\(text): \(fast) against \(slow)")
            if case .number(let a) = fast, case .number(let b) = slow { #expect(a.bitPattern == b.bitPattern, "\(text)") }
        }
    }

    @Test("what it does not expect, it leaves to the decoder; parse then gives the decoder's answer")
    func leavesTheRestToTheDecoder() {
        for text in Self.refused {
            #expect(JSONValueReader.value(Array(text.utf8)) == Optional<JSONValue>.none, "the reader took \(text.prefix(40))")
            #expect((try? JSONValue.parse(text)) == Self.decoded(text), "\(text.prefix(40))")
        }
        // Invalid UTF-8 inside a string.
        let invalid: [UInt8] = Array("\"a".utf8) + [0xC3, 0x28] + Array("\"".utf8)
        #expect(JSONValueReader.value(invalid) == Optional<JSONValue>.none)
        #expect((try? JSONValue.parse(invalid)) == Optional<JSONValue>.none)
    }

    @Test("random values written compactly and by JSONEncoder read back the same, as the decoder reads them")
    func randomValues() throws {
        var generator = SeededGenerator(seed: 0x5EED)
        for _ in 0..<500 {
            let value = Self.random(depth: 0, &generator)
            for bytes in [value.jsonBytes, Array(try JSONEncoder().encode(value))] {
                let fast = try #require(JSONValueReader.value(bytes), "the reader gave up on \(String(decoding: bytes, as: UTF8.self))")
                #expect(fast == (try JSONDecoder().decode(JSONValue.self, from: Data(bytes))))
            }
        }
    }

    static func random(depth: Int, _ g: inout SeededGenerator) -> JSONValue {
        switch g.next() % (depth > 3 ? 4 : 6) {
        case 0: return .null
        case 1: return .bool(g.next() % 2 == 0)
        case 2:
            let n = Int64(bitPattern: g.next())
            switch g.next() % 3 {
            case 0: return .number(Double(n % 1_000_000))
            case 1: return .number(Double(n) / 1_000)
            default: return .number(Double(bitPattern: g.next() & 0x7FEF_FFFF_FFFF_FFFF) * (n < 0 ? -1 : 1))
            }
        case 3:
            let alphabet = Array("ab \"\\/\t\n\u{01}é日🦩")
            return .string(String((0..<(g.next() % 12)).map { _ in alphabet[Int(g.next() % UInt64(alphabet.count))] }))
        case 4: return .array((0..<(g.next() % 5)).map { _ in random(depth: depth + 1, &g) })
        default:
            var members: [String: JSONValue] = [:]
            for k in 0..<(g.next() % 5) { members["k\(k)\(g.next() % 3 == 0 ? "é" : "")"] = random(depth: depth + 1, &g) }
            return .object(members)
        }
    }
}
