import Foundation
import SluiceCore
@testable import SluiceWorker
import Testing

@Suite("Ordered partitions shared out among workers (no broker)")
struct PartitionControlTests {
    @Test("every partition has one owner; four workers own four each; all compute the same")
    func owners() {
        let members = ["h:1 100", "h:2 200", "h:3 300", "h:4 400"]
        var owned: [String: Int] = [:]
        for p in 0..<Topology.orderPartitionCount {
            let owner = PartitionControl.owner(queue: "ledger", partition: p, members: members)!
            owned[owner, default: 0] += 1
            // The same roster in another order is sorted first by every worker (RateSchedule.members).
            #expect(PartitionControl.owner(queue: "ledger", partition: p, members: members.reversed().sorted()) == owner)
        }
        #expect(owned.values.sorted() == [4, 4, 4, 4])
        #expect(PartitionControl.owner(queue: "ledger", partition: 3, members: ["only"]) == "only")
        #expect(PartitionControl.owner(queue: "ledger", partition: 3, members: []) == nil)
    }

    @Test("two workers that hear each other's heartbeats (through JSON) list the same members")
    func sameRoster() throws {
        let t0 = ContinuousClock.now
        func start(_ ms: Double) -> Date { Date(timeIntervalSince1970: (1_700_000_000_000 + ms).rounded(.down) / 1000) }
        var a = RateSchedule(me: "h:1", startedAt: start(123), limits: [], orderedQueues: ["ledger"])
        var b = RateSchedule(me: "h:1", startedAt: start(789), limits: [], orderedQueues: ["ledger"])  // same host:pid, another container
        func beat(_ worker: String, _ started: Date) throws -> WorkerHeartbeat {
            try WorkerHeartbeat.decode(WorkerHeartbeat(worker: worker, host: "h", pid: 1, queues: ["ledger"], concurrency: 1, inFlight: 0,
                                                       processed: 0, succeeded: 0, retried: 0, dead: 0, startedAt: started, at: Date(),
                                                       intervalSeconds: 1, orderedQueues: ["ledger"]).jsonBytes())
        }
        a.record(try beat("h:1", start(789)), now: t0)
        b.record(try beat("h:1", start(123)), now: t0)
        let key = RateSchedule.orderKey("ledger")
        #expect(a.members(holding: key, now: t0) == b.members(holding: key, now: t0))
        #expect(a.members(holding: key, now: t0).count == 2)
    }

    @Test("the roster lists live ordered workers of a queue by the id every worker computes for them")
    func roster() {
        let start = Date(timeIntervalSince1970: 1_700_000_000.123)
        var s = RateSchedule(me: "h:1", startedAt: start, limits: [], orderedQueues: ["ledger"])
        let t0 = ContinuousClock.now
        func beat(_ worker: String, queues: [String]?, state: String = "running") -> WorkerHeartbeat {
            WorkerHeartbeat(worker: worker, host: "h", pid: 2, queues: ["ledger"], concurrency: 1, inFlight: 0, processed: 0,
                            succeeded: 0, retried: 0, dead: 0, startedAt: Date(timeIntervalSince1970: 1_700_000_001.5),
                            at: Date(), state: state, intervalSeconds: 1, orderedQueues: queues)
        }
        s.record(beat("h:2", queues: ["ledger"]), now: t0)
        s.record(beat("h:3", queues: nil), now: t0)             // not ordered
        s.record(beat("h:4", queues: ["other"]), now: t0)       // another queue
        s.record(beat("h:5", queues: ["ledger"], state: "stopping"), now: t0)
        #expect(s.members(holding: RateSchedule.orderKey("ledger"), now: t0) == ["h:1 1700000000123", "h:2 1700000001500"])
        #expect(s.myID == "h:1 1700000000123")
        // h:2 falls silent: alone again.
        #expect(s.members(holding: RateSchedule.orderKey("ledger"), now: t0 + .seconds(4)) == ["h:1 1700000000123"])
    }

    @Test("a partition is given up only once it had a delivery, when nothing of it runs (else right after), at most every interval")
    func yielding() {
        let control = PartitionControl()
        let consumer = BrokerConsumer(AsyncThrowingStream<BrokerDelivery, any Error> { $0.finish() }, cancel: {}, close: {})
        let key = PartitionControl.key("ledger", 3)
        control.register(key, consumer)
        let t0 = ContinuousClock.now
        // Never had a delivery: maybe only waiting; closing it would just churn.
        #expect(control.giveUp(key, every: .seconds(5), now: t0) == nil)
        #expect(control.beginDelivery(key))
        // Running: not now, but right after.
        #expect(control.giveUp(key, every: .seconds(5), now: t0) == nil)
        #expect(control.endDelivery(key) != nil)
        #expect(control.isYielded(key))
        // A delivery that arrives after the partition was given up never starts.
        #expect(!control.beginDelivery(key))
        #expect(control.takeYielded(key))
        #expect(!control.takeYielded(key))
        control.register(key, consumer)
        #expect(control.beginDelivery(key))
        #expect(control.endDelivery(key) == nil)
        #expect(control.giveUp(key, every: .seconds(5), now: t0 + .seconds(1)) == nil)  // too soon
        #expect(control.giveUp(key, every: .seconds(5), now: t0 + .seconds(6)) != nil)
    }

    @Test("two copies of a delivery after a reconnect: the partition is not given up until both ended; keep cancels a pending give-up")
    func counted() {
        let control = PartitionControl()
        let consumer = BrokerConsumer(AsyncThrowingStream<BrokerDelivery, any Error> { $0.finish() }, cancel: {}, close: {})
        let key = PartitionControl.key("ledger", 1)
        control.register(key, consumer)
        #expect(control.beginDelivery(key))       // the stale copy
        control.register(key, consumer)          // the recovered consumer
        #expect(control.beginDelivery(key))       // its redelivery
        #expect(control.giveUp(key, every: .seconds(5)) == nil)
        #expect(control.endDelivery(key) == nil)  // the stale copy ended; the other still runs
        #expect(control.endDelivery(key) != nil)
        control.register(key, consumer)
        #expect(control.beginDelivery(key))
        #expect(control.giveUp(key, every: .zero) == nil)
        control.keep(key)                         // owned after all
        #expect(control.endDelivery(key) == nil)
    }
}
