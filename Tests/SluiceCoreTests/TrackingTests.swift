import Foundation
import SluiceCore
import SluiceWire
import Testing

@Suite("Task tracking on the wire (no server)")
struct TrackingTests {
    @Test("sluice-track travels as a header, read as 1, true or \"true\"; absent means untracked")
    func header() throws {
        let task = TaskEnvelope(name: "n", queue: "q", arguments: Array("{}".utf8), track: true)
        let (properties, body) = task.encode()
        #expect(properties.headers?[WireHeader.track] == .int64(1))
        #expect(try TaskEnvelope.decode(properties: properties, body: body, queue: "q").track)
        for value: FieldValue in [.bool(true), .string("true"), .string("1")] {
            var p = properties
            p.headers?[WireHeader.track] = value
            #expect(try TaskEnvelope.decode(properties: p, body: body, queue: "q").track, "\(value)")
        }
        let plain = TaskEnvelope(name: "n", queue: "q", arguments: Array("{}".utf8)).encode()
        #expect(plain.properties.headers?[WireHeader.track] == nil)
        #expect(try !TaskEnvelope.decode(properties: plain.properties, body: plain.body, queue: "q").track)
    }

    @Test("a tracked task's events go to ~track.<queue>.<kind>; a step's keep ~wf; plain ones <queue>.<kind>")
    func routingKeys() throws {
        let topology = try Topology(prefix: "p")
        let tracked = TaskEnvelope(name: "n", queue: "emails~high", arguments: [], track: true)
        let event = TaskEvent(kind: .started, task: tracked)
        #expect(event.tracked == true)
        #expect(topology.eventRoutingKey(for: event) == "~track.emails~high.started")
        #expect(TopicPattern.matches(topology.trackingBindings[0], "~track.emails~high.started"))
        #expect(TopicPattern.matches("#.started", "~track.emails~high.started"), "monitors' #.kind bindings still match")
        var step = tracked
        step.workflowRunID = "r1"
        #expect(topology.eventRoutingKey(for: TaskEvent(kind: .succeeded, task: step)).hasPrefix("~wf."))
        #expect(topology.eventRoutingKey(for: TaskEvent(kind: .succeeded, task: TaskEnvelope(name: "n", queue: "q", arguments: [])))
                == "q.succeeded")
        #expect(topology.queueKind(topology.trackingQueue)?.kind == .coordinator)
    }

    @Test("events carry tracked, progress and its message in JSON, and read back")
    func eventJSON() throws {
        var event = TaskEvent(kind: .progress, task: TaskEnvelope(name: "n", queue: "q", arguments: [], track: true))
        event.progress = 0.5
        event.progressMessage = "half \"way\""
        let text = String(decoding: event.jsonBytes(), as: UTF8.self)
        #expect(text.contains(#""tracked":true"#) && text.contains(#""progress":0.5"#))
        let back = try TaskEvent.decode(event.jsonBytes())
        #expect(back.kind == .progress && back.tracked == true && back.progress == 0.5 && back.progressMessage == "half \"way\"")
    }
}
