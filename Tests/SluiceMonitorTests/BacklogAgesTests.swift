import Foundation
import SluiceCore
import SluiceMonitor
import Testing

@Suite("Backlog ages from ready counts and worker heartbeats (no server)")
struct BacklogAgesTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    @Test("an empty queue is 0 old; ready tasks seen after that are at most as old as that last empty sample")
    func sinceEmpty() {
        var ages = BacklogAges()
        #expect(ages.observe("q", ready: 0, now: t0) == .init(seconds: 0, basis: .empty))
        #expect(ages.observe("q", ready: 3, now: t0 + 10) == .init(seconds: 10, basis: .empty))
        #expect(ages.observe("q", ready: 5, now: t0 + 25) == .init(seconds: 25, basis: .empty), "grows while nothing is taken")
        #expect(ages.observe("q", ready: nil, now: t0 + 30) == nil, "an unknown count has no age")
    }

    @Test("never seen empty and no worker report: counted from the first sight, as a lower bound")
    func watching() {
        var ages = BacklogAges()
        #expect(ages.observe("q", ready: 4, now: t0) == .init(seconds: 0, basis: .watching))
        #expect(ages.observe("q", ready: 4, now: t0 + 7) == .init(seconds: 7, basis: .watching))
        // Other queues keep their own.
        #expect(ages.observe("r", ready: 1, now: t0 + 7) == .init(seconds: 0, basis: .watching))
    }

    @Test("a worker's newest taken task bounds the age when it is later than the last empty sample, and outlives the worker")
    func workers() {
        var ages = BacklogAges()
        _ = ages.observe("q", ready: 0, now: t0)
        ages.record(newestTaken: ["q": t0 + 20], now: t0 + 21)
        #expect(ages.observe("q", ready: 9, now: t0 + 30) == .init(seconds: 10, basis: .workers))
        // An older report (another worker, behind) does not move it back.
        ages.record(newestTaken: ["q": t0 + 5], now: t0 + 31)
        #expect(ages.observe("q", ready: 9, now: t0 + 40) == .init(seconds: 20, basis: .workers))
        // Emptied again later: that is the tighter bound now.
        _ = ages.observe("q", ready: 0, now: t0 + 50)
        #expect(ages.observe("q", ready: 1, now: t0 + 55) == .init(seconds: 5, basis: .empty))
        // A report for a queue never sampled is kept for when it is.
        ages.record(newestTaken: ["new": t0 + 50], now: t0 + 55)
        #expect(ages.observe("new", ready: 2, now: t0 + 60) == .init(seconds: 10, basis: .workers))
    }

    @Test("the broker's head timestamp, when it reports one, is exact")
    func broker() {
        var ages = BacklogAges()
        _ = ages.observe("q", ready: 0, now: t0)
        #expect(ages.observe("q", ready: 2, headTimestamp: t0 - 100, now: t0 + 1) == .init(seconds: 101, basis: .broker))
        #expect(ages.observe("q", ready: 2, headTimestamp: t0 + 5, now: t0 + 1)?.seconds == 0, "a clock ahead of ours is not negative")
    }

    @Test("the management API's head_message_timestamp (classic queues) is used; quorum queues have none")
    func managementHead() throws {
        let topology = try Topology(prefix: "p")
        let classic = ManagedQueue(name: "p.q.old", type: "classic", ready: 2, unacknowledged: 0, consumers: 0,
                                   headMessageTimestamp: Date(timeIntervalSince1970: 1000))
        let quorum = ManagedQueue(name: "p.q.new", ready: 2, unacknowledged: 0, consumers: 0)
        let overview = QueueCollector.overview(from: [classic, quorum], topology: topology, only: [], waits: [:],
                                               at: Date(timeIntervalSince1970: 1030))
        let old = try #require(overview.queues.first { $0.queue == "old" })
        #expect(old.oldestAgeSeconds == 30 && old.oldestAgeBasis == .broker)
        #expect(overview.queues.first { $0.queue == "new" }?.oldestAgeSeconds == nil, "left to the collector's bounds")
    }

    @Test("rendering: seconds and minutes, ≥ before a lower bound, - when unknown")
    func rendering() {
        var row = QueueRow(queue: "q")
        #expect(Rendering.age(row) == "-")
        row.oldestAgeSeconds = 0.4
        row.oldestAgeBasis = .empty
        #expect(Rendering.age(row) == "0s")
        row.oldestAgeSeconds = 250
        row.oldestAgeBasis = .workers
        #expect(Rendering.age(row) == "4m10s")
        row.oldestAgeBasis = .watching
        #expect(Rendering.age(row) == "≥4m10s")
    }
}
