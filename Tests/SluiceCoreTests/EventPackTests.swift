import Foundation
import SluiceCore
import SluiceWire
import Testing

@Suite("Event packs")
struct EventPackTests {
    static let topology = try! Topology(prefix: "unit")

    static func event(_ id: String, _ kind: TaskEvent.Kind = .succeeded, run: String = "run-1") -> TaskEvent {
        var task = TaskEnvelope(id: id, name: "n", queue: "q", arguments: Array("{}".utf8))
        task.workflowRunID = run
        task.workflowStep = "s"
        var event = TaskEvent(kind: kind, task: task, at: Date(timeIntervalSince1970: 1_800_000_000))
        event.result = #"{"text":"a, b] [c \"d\"}"#
        return event
    }

    @Test("a pack's key is ~wf.<bucket>.~pack.<kind>; no step's or plain task's key is taken for one")
    func keys() {
        #expect(Self.topology.eventPackRoutingKey(bucket: 3, kind: .succeeded) == "~wf.3.~pack.succeeded")
        #expect(Topology.isEventPackKey("~wf.3.~pack.succeeded"))
        #expect(Topology.isEventPackKey("~wf.63.~pack.dead"))
        #expect(!Topology.isEventPackKey("~wf.3.orders.succeeded"))
        #expect(!Topology.isEventPackKey("~wf.3.~run"))
        #expect(!Topology.isEventPackKey("~wf.3.~pack"))
        #expect(!Topology.isEventPackKey("orders.succeeded"))
        #expect(!Topology.isEventPackKey("~track.orders.succeeded"))
        #expect(!Topology.isEventPackKey(""))
    }

    @Test("a plain task's outcomes pack under ~pack.<kind>.<queue>.~, which no binding for single events matches")
    func plainKeys() {
        let t = Self.topology
        #expect(t.plainEventPackRoutingKey(queue: "orders", kind: .succeeded) == "~pack.succeeded.orders.~")
        #expect(t.plainEventPackRoutingKey(forEventKey: "orders.succeeded") == "~pack.succeeded.orders.~")
        #expect(t.plainEventPackRoutingKey(forEventKey: "orders~high.dead") == "~pack.dead.orders~high.~")
        #expect(t.plainEventPackRoutingKey(forEventKey: "billing.dead.retrying") == "~pack.retrying.billing.dead.~")
        #expect(t.plainEventPackRoutingKey(forEventKey: "_jobs.succeeded") == "~pack.succeeded._jobs.~")
        // Never packed: progress and started, steps', tracked tasks', heartbeats and pings.
        #expect(t.plainEventPackRoutingKey(forEventKey: "orders.progress") == nil)
        #expect(t.plainEventPackRoutingKey(forEventKey: "orders.started") == nil)
        #expect(t.plainEventPackRoutingKey(forEventKey: "~wf.3.orders.succeeded") == nil)
        #expect(t.plainEventPackRoutingKey(forEventKey: "~track.orders.succeeded") == nil)
        #expect(t.plainEventPackRoutingKey(forEventKey: t.workerHeartbeatRoutingKey) == nil)
        #expect(t.plainEventPackRoutingKey(forEventKey: t.workerPingRoutingKey) == nil)
        #expect(t.plainEventPackRoutingKey(forEventKey: "succeeded") == nil)
        #expect(Topology.isEventPackKey("~pack.succeeded.orders.~") && Topology.isPlainEventPackKey("~pack.succeeded.orders.~"))
        #expect(!Topology.isPlainEventPackKey("~wf.3.~pack.succeeded"))
        // Whatever the queue is called (even a kind's name), single-event bindings do not match.
        for queue in ["orders", "dead", "billing.succeeded", "x.progress"] {
            let key = t.plainEventPackRoutingKey(queue: queue, kind: .succeeded)
            for singles in ["\(queue).succeeded", "#.succeeded", "#.dead", "#.progress", "*.succeeded", "~wf.#", "~track.#"] {
                #expect(!TopicPattern.matches(singles, key), "\(singles) matched \(key)")
            }
            for packs in [key, "~pack.succeeded.#", "~pack.#", "#"] { #expect(TopicPattern.matches(packs, key), "\(packs)") }
        }
    }

    @Test("a pack for a partition's bucket reaches that partition's queue and no other", arguments: [1, 4, 16])
    func routing(partitions: Int) {
        for run in ["a", "b", "run-42", "0f9e"] {
            let partition = Topology.partition(runID: run, of: partitions)
            for kind in Topology.packedEventKinds {
                let key = Self.topology.eventPackRoutingKey(bucket: partition, kind: kind)
                for p in 0..<partitions {
                    let bound = Self.topology.coordinatorBindings(partition: p, of: partitions)
                        .contains { TopicPattern.matches($0, key) }
                    #expect(bound == (p == partition), "\(key) bound to partition \(p) of \(partitions)")
                }
            }
        }
    }

    @Test("a pack is a JSON array of the events as they are alone; it reads back in order")
    func roundTrip() throws {
        let events = [Self.event("t-1"), Self.event("t-2", .retrying, run: "run-2"), Self.event("t-3", .dead)]
        let message = EventPack.message(exchange: "x", routingKey: "~wf.0.~pack.succeeded", bodies: events.map { $0.jsonBytes() })
        #expect(message.mandatory)
        #expect(message.properties.deliveryMode == 2)
        #expect(try JSONSerialization.jsonObject(with: Data(message.body)) is [Any])
        #expect(try EventPack.decode(message.body) == events)
        #expect(try EventPack.decode(Array("[]".utf8)).isEmpty)
        #expect(throws: (any Error).self) { try EventPack.decode(Self.event("t-1").jsonBytes()) }
        #expect(throws: (any Error).self) { try EventPack.decode(Array("[{\"kind\":1}]".utf8)) }
    }

    @Test("one malformed element costs only itself; a body that is no array counts as one")
    func decodeEach() {
        let good = [Self.event("t-1"), Self.event("t-2")]
        var body = Array("[".utf8) + good[0].jsonBytes() + Array(#",{"kind":"dead","attempt":99999999999999999999},"#.utf8)
        body += Array(#"{"no":"event"},"#.utf8) + good[1].jsonBytes() + Array("]".utf8)
        let (events, invalid) = EventPack.decodeEach(body)
        #expect(events.map(\.taskID) == ["t-1", "t-2"])
        #expect(invalid == 2)
        #expect(EventPack.decodeEach(Array("{}".utf8)).invalid == 1)
        #expect(EventPack.decodeEach(Array("[1,".utf8)).events.isEmpty)
        let whole = EventPack.decodeEach(EventPack.message(exchange: "", routingKey: "", bodies: good.map { $0.jsonBytes() }).body)
        #expect(whole.events == good && whole.invalid == 0)
    }

    @Test("a step task's pack bucket comes from its header, only within the buckets and only on a step")
    func bucketHeader() {
        var step = TaskEnvelope(name: "n", queue: "q", arguments: [])
        step.workflowRunID = "run-1"
        #expect(step.eventPackBucket == nil)
        step.eventPackBucket = 5
        #expect(step.otherHeaders[WireHeader.eventPack]?.intValue == 5)
        #expect(step.eventPackBucket == 5)
        for bad: FieldValue in [.int64(64), .int64(-1), .string("x")] {
            step.otherHeaders[WireHeader.eventPack] = bad
            #expect(step.eventPackBucket == nil, "\(bad)")
        }
        var plain = TaskEnvelope(name: "n", queue: "q", arguments: [])
        plain.otherHeaders[WireHeader.eventPack] = .int64(5)
        #expect(plain.eventPackBucket == nil)
    }
}
