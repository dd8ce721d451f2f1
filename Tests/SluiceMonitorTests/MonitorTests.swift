import Foundation
import SluiceClient
import SluiceCore
import SluiceMonitor
import SluiceWire
import Testing

@Suite("Monitoring and trace helpers (no server)")
struct MonitorTests {
    @Test("topic patterns match as RabbitMQ's topic exchange does")
    func topics() {
        #expect(TopicPattern.matches("#.succeeded", "emails.succeeded"))
        #expect(TopicPattern.matches("#.succeeded", "a.b.c.succeeded"))
        #expect(TopicPattern.matches("#", "anything.at.all"))
        #expect(TopicPattern.matches("_workers.ping", "_workers.ping"))
        #expect(TopicPattern.matches("*.dead", "q.dead"))
        #expect(!TopicPattern.matches("*.dead", "a.q.dead"))
        #expect(!TopicPattern.matches("#.succeeded", "emails.retrying"))
        #expect(!TopicPattern.matches("_workers.heartbeat", "_workers.ping"))
    }

    @Test("traceparent: parsing, validity, and children that keep the trace with stable span ids")
    func traceparent() throws {
        let t = try #require(TraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
        #expect(t.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(t.description == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        #expect(TraceParent("00-00000000000000000000000000000000-00f067aa0ba902b7-01") == nil)
        #expect(TraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01") == nil)
        #expect(TraceParent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == nil)
        #expect(TraceParent("00-xyz-00f067aa0ba902b7-01") == nil)
        #expect(TraceParent("garbage") == nil)
        #expect(TraceParent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01") == nil, "upper case is invalid")
        #expect(TraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra") == nil, "version 00 has 4 fields")
        #expect(TraceParent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra") != nil, "later versions may add fields")
        #expect(TraceParent("00-４bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01") == nil, "ASCII hex only")
        let a = t.child(seed: "task-1"), b = t.child(seed: "task-2")
        #expect(a.traceID == t.traceID && b.traceID == t.traceID)
        #expect(a.spanID != b.spanID && a.spanID != t.spanID)
        #expect(a == t.child(seed: "task-1"), "stable: a republished message carries the same value")
        #expect(TraceParent(a.description) == a)
        let r = TraceParent.random()
        #expect(TraceParent(r.description) == r)
    }

    @Test("a task enqueued inside a handler joins the handler's trace")
    func enqueueJoinsCurrentTrace() async throws {
        let broker = InMemoryBroker(topology: try Topology(prefix: "tr"))
        let client = TaskClient(broker: broker)
        try await broker.prepare(queues: ["q"])
        let parent = TraceParent.random()
        try await TraceParent.$current.withValue(parent) {
            _ = try await client.enqueue(name: "t", json: Array("{}".utf8), options: .init(queue: "q"))
        }
        _ = try await client.enqueue(name: "t", json: Array("{}".utf8), options: .init(queue: "q"))
        let messages = await broker.readyMessages(broker.topology.workQueue("q"))
        let traces = messages.map { $0.properties.headers?["traceparent"]?.stringValue }
        #expect(traces.count == 2)
        #expect(traces[0].flatMap(TraceParent.init)?.traceID == parent.traceID)
        #expect(traces[1] == nil, "no trace outside one")
    }

    @Test("the roster marks a silent worker gone after three intervals and a stopped one stopped")
    func roster() {
        var roster = WorkerRoster(forgetAfter: 60)
        let t0 = Date(timeIntervalSince1970: 1_000_000)
        func beat(_ id: String, _ at: Date, state: String = "running") -> WorkerHeartbeat {
            WorkerHeartbeat(worker: id, host: "h", pid: 1, queues: ["q"], concurrency: 4, inFlight: 1, processed: 10, succeeded: 8,
                            retried: 1, dead: 1, startedAt: t0, at: at, state: state, intervalSeconds: 5)
        }
        roster.record(beat("a", t0), now: t0)
        roster.record(beat("b", t0), now: t0)
        roster.record(beat("b", t0 + 10, state: "stopped"), now: t0 + 10)
        var entries = roster.entries(now: t0 + 12)
        #expect(entries.map(\.status) == ["running", "stopped"])
        #expect(entries[0].heartbeat.failed == 2)
        entries = roster.entries(now: t0 + 16)
        #expect(entries.map(\.status) == ["gone", "stopped"])
        #expect(roster.entries(now: t0 + 200).isEmpty, "forgotten after a while")
        // An old beat arriving late does not roll a worker back.
        roster.record(beat("c", t0 + 20), now: t0 + 20)
        roster.record(beat("c", t0 + 5), now: t0 + 21)
        #expect(roster.entries(now: t0 + 21).first?.heartbeat.at == t0 + 20)
    }

    @Test("queue overview from the management API's list: work, dead and delay queues, other prefixes ignored")
    func overview() throws {
        let t = try Topology(prefix: "app")
        let list = [
            ManagedQueue(name: "app.q.emails", ready: 7, unacknowledged: 2, consumers: 3, publishRate: 10, deliverRate: 9, ackRate: 8),
            ManagedQueue(name: "app.dead.emails", ready: 4, unacknowledged: 0, consumers: 0),
            ManagedQueue(name: "app.q.reports", ready: 0, unacknowledged: 0, consumers: 1),
            ManagedQueue(name: "app.delay.1000", ready: 5, unacknowledged: 0, consumers: 0),
            ManagedQueue(name: "app.delay.5000", ready: 1, unacknowledged: 0, consumers: 0),
            ManagedQueue(name: "app.coordinator", ready: 0, unacknowledged: 0, consumers: 1),
            ManagedQueue(name: "other.q.emails", ready: 99, unacknowledged: 0, consumers: 0),
        ]
        let o = QueueCollector.overview(from: list, topology: t, only: [], waits: ["emails": 120])
        #expect(o.queues.map(\.queue) == ["emails", "reports"])
        let emails = o.queues[0]
        #expect(emails.ready == 7 && emails.unacknowledged == 2 && emails.consumers == 3 && emails.dead == 4)
        #expect(emails.publishRate == 10 && emails.ackRate == 8 && emails.recentWaitMilliseconds == 120)
        #expect(o.delayed == 6)
        #expect(o.ratesAvailable)
        let only = QueueCollector.overview(from: list, topology: t, only: ["reports", "nope"], waits: [:])
        #expect(only.queues.map(\.queue) == ["nope", "reports"])
        #expect(only.queues[0].missing)
    }

    @Test("a quorum queue's leader and members: online of all, flagged when a member is offline, in the JSON too")
    func replicas() throws {
        let t = try Topology(prefix: "app")
        let nodes = ["r1@h", "r2@h", "r3@h"]
        let list = [
            ManagedQueue(name: "app.q.ok", ready: 0, unacknowledged: 0, consumers: 1, leader: "r1@h", members: nodes, online: nodes),
            ManagedQueue(name: "app.q.short", ready: 0, unacknowledged: 0, consumers: 1, leader: "r2@h", members: nodes,
                         online: ["r2@h", "r3@h"]),
            ManagedQueue(name: "app.q.classic", type: "classic", ready: 0, unacknowledged: 0, consumers: 0),
        ]
        let o = QueueCollector.overview(from: list, topology: t, only: [], waits: [:])
        let rows = Dictionary(uniqueKeysWithValues: o.queues.map { ($0.queue, $0) })
        #expect(rows["ok"]?.members == 3 && rows["ok"]?.online == 3 && rows["ok"]?.leader == "r1@h" && rows["ok"]?.underReplicated == false)
        #expect(rows["short"]?.online == 2 && rows["short"]?.underReplicated == true)
        #expect(rows["classic"]?.members == nil && rows["classic"]?.underReplicated == false)
        let p = Rendering.Palette(enabled: false)
        #expect(Rendering.replicas(rows["ok"]!, palette: p) == "3/3")
        #expect(Rendering.replicas(rows["short"]!, palette: p) == "2/3 !")
        #expect(Rendering.replicas(rows["classic"]!, palette: p) == "-")
        #expect(Rendering.node("rabbit@localhost") == "rabbit")
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(rows["short"]!)) as? [String: Any]
        #expect(json?["underReplicated"] as? Bool == true && json?["members"] as? Int == 3 && json?["online"] as? Int == 2)
        #expect(try JSONDecoder().decode(QueueRow.self, from: JSONEncoder().encode(rows["short"]!)) == rows["short"]!)
    }

    @Test("tables align columns whatever the colour codes; sparklines scale to their maximum")
    func rendering() {
        let p = Rendering.Palette(enabled: true)
        let lines = Rendering.table(["A", "B"], [[p.red("x"), "10"], ["longer", "2"]], right: [1], palette: Rendering.Palette(enabled: false))
        #expect(lines == ["A        B", "\u{1B}[31mx\u{1B}[0m       10", "longer   2"])
        #expect(Rendering.sparkline([0, 1, 2, 4]) == "▁▃▅█")
        #expect(Rendering.sparkline([0, 0]) == "▁▁")
        #expect(Rendering.duration(milliseconds: 125_000) == "2m5s")
        #expect(Rendering.rate(1530) == "1.5k/s")
    }
}
