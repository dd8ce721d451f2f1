import Foundation
@testable import SluiceCore
import SluiceWire
import Testing

/// The hand-written event reader against Foundation's decoder: it must give
/// the same event, or give up (and the decoder decides).
@Suite("Event reader")
struct TaskEventReaderTests {
    static let strings = ["", "plain", "with \"quotes\" and \\ and /", "tab\tline\nfeed\r", "\u{01}\u{1F}", "é ü ß", "日本語",
                          "emoji 🦩 and 𝄞", "{\"json\": [1, 2]}", String(repeating: "x", count: 300)]

    static func randomEvent(_ g: inout SystemRandomNumberGenerator) -> TaskEvent {
        func pick<T>(_ values: [T]) -> T { values[Int.random(in: 0..<values.count, using: &g)] }
        func maybe<T>(_ value: T) -> T? { Bool.random(using: &g) ? value : nil }
        var task = TaskEnvelope(id: pick(strings), name: pick(strings), queue: pick(strings), arguments: [],
                                attempt: Int.random(in: 1...1_000_000, using: &g))
        task.workflowRunID = maybe(pick(strings))
        task.workflowStep = maybe(pick(strings))
        var event = TaskEvent(kind: pick(TaskEvent.Kind.allCases), task: task,
                              at: Date(epochMilliseconds: Int64.random(in: -1_000_000...4_000_000_000_000, using: &g)),
                              worker: maybe(pick(strings)))
        event.result = maybe(pick(strings))
        event.errorType = maybe(pick(strings))
        event.errorMessage = maybe(pick(strings))
        event.nextDelayMilliseconds = maybe(Int.random(in: 0...100_000_000, using: &g))
        event.deadReason = maybe(pick(DeadReason.allCases))
        event.durationMilliseconds = maybe(pick([0, 1, 0.5, 1e-7, 123456.789, Double.random(in: 0...1e6, using: &g)]))
        event.waitMilliseconds = maybe(Double.random(in: 0...1e9, using: &g))
        event.tracked = maybe(Bool.random(using: &g))
        event.progress = maybe(Double.random(in: 0...1, using: &g))
        event.progressMessage = maybe(pick(strings))
        event.signature = maybe(pick(strings))
        return event
    }

    @Test("events as workers write them read back the same as with Foundation's decoder, alone and in packs")
    func agreesWithFoundation() throws {
        var g = SystemRandomNumberGenerator()
        var events: [TaskEvent] = []
        for _ in 0..<2000 {
            let event = Self.randomEvent(&g)
            let bytes = event.jsonBytes()
            let fast = try #require(TaskEventReader.event(bytes), "the reader gave up on \(String(decoding: bytes, as: UTF8.self))")
            #expect(fast == event)
            #expect(fast == (try TaskEvent.decodeWithFoundation(bytes)))
            events.append(event)
        }
        let pack = EventPack.message(exchange: "", routingKey: "", bodies: events.map { $0.jsonBytes() }).body
        #expect(TaskEventReader.events(pack) == events)
        #expect(TaskEventReader.events(Array(" [ ] ".utf8)) == [])
    }

    @Test("what it does not expect it leaves to Foundation's decoder, which decides", arguments: [
        // Whitespace, null optionals, escapes it reads itself:
        #" { "kind" : "dead" , "taskID":"a\u00e9\ud83e\udda9\/" ,"taskName":"n","queue":"q","attempt":2,"at":-5, "result":null, "tracked":null } "#,
        // Left to the decoder, which reads them:
        #"{"kind":"dead","taskID":"a","taskName":"n","queue":"q","attempt":2,"at":5,"unknown":{"x":[1,2]}}"#,
        #"{"kind":"dead","taskID":"a","taskName":"n","queue":"q","attempt":2.0,"at":5}"#,
        #"{"kind":"dead","taskID":"a","taskName":"n","queue":"q","attempt":2,"at":5,"durationMilliseconds":1E+2}"#,
        // Left to the decoder, which refuses them:
        #"{"kind":"dead","taskID":"a","taskName":"n","queue":"q","attempt":2,"at":5,"durationMilliseconds":1.}"#,
        #"{"kind":"dead","taskID":"a","taskName":"n","queue":"q","attempt":2,"at":5,"durationMilliseconds":01}"#,
        #"{"kind":"dead","taskID":"a","taskName":"n","queue":"q","attempt":2,"at":5,"durationMilliseconds":+1}"#,
        #"{"kind":"dead","taskID":"a","taskName":"n","queue":"q","attempt":2,"at":5,"durationMilliseconds":1e-400}"#,
        #"{"kind":"dead","taskID":"a","taskName":"n","queue":"q","attempt":2,"at":5,"deadReason":"no-such"}"#,
        #"{"kind":"gone","taskID":"a","taskName":"n","queue":"q","attempt":2,"at":5}"#,
        #"{"kind":"dead","taskID":"\ud800","taskName":"n","queue":"q","attempt":2,"at":5}"#,
        #"{"kind":"dead","taskID":"a\x","taskName":"n","queue":"q","attempt":2,"at":5}"#,
        #"{"kind":"dead","taskName":"n","queue":"q","attempt":2,"at":5}"#,
        #"{"kind":"dead","taskID":null,"taskName":"n","queue":"q","attempt":2,"at":5}"#,
        #"{"kind":"dead","taskID":"a","taskName":"n","queue":"q","attempt":2,"at":5} x"#,
        #"{"kind":"dead","taskID":"a","taskName":"n","queue":"q","attempt":2,"at":5,}"#,
        "{\"kind\":\"dead\",\"taskID\":\"a\u{01}\",\"taskName\":\"n\",\"queue\":\"q\",\"attempt\":2,\"at\":5}",
        "[]", "", "{}", "null",
        // Numbers too long for an Int: never a trap.
        #"{"kind":"dead","taskID":"a","taskName":"n","queue":"q","attempt":99999999999999999999,"at":5}"#,
        #"{"kind":"dead","taskID":"a","taskName":"n","queue":"q","attempt":1,"at":-99999999999999999999}"#,
        #"{"kind":"dead","taskID":"a","taskName":"n","queue":"q","attempt":1,"at":9999999999999999999}"#,
        #"{"kind":"dead","taskID":"a","taskName":"n","queue":"q","attempt":1,"at":999999999999999999}"#,
        #"{"kind":"dead","taskID":"a","taskName":"n","queue":"q","attempt":1,"at":5,"nextDelayMilliseconds":123456789012345678901234567890}"#,
    ])
    func fallsBack(_ text: String) {
        let bytes = Array(text.utf8)
        let foundation = try? TaskEvent.decodeWithFoundation(bytes)
        if let fast = TaskEventReader.event(bytes) {
            #expect(fast == foundation, "the reader read \(text) otherwise than Foundation")
        }
        #expect((try? TaskEvent.decode(bytes)) == foundation)
    }

    @Test("invalid UTF-8 and a repeated key are left to the decoder")
    func strictness() {
        var bytes = Array(#"{"kind":"dead","taskID":"a"#.utf8) + [0xFF] + Array(#"","taskName":"n","queue":"q","attempt":2,"at":5}"#.utf8)
        #expect(TaskEventReader.event(bytes) == nil)
        #expect((try? TaskEvent.decode(bytes)) == (try? TaskEvent.decodeWithFoundation(bytes)))
        bytes = Array(#"{"kind":"dead","kind":"succeeded","taskID":"a","taskName":"n","queue":"q","attempt":2,"at":5}"#.utf8)
        #expect(TaskEventReader.event(bytes) == nil)
    }
}
