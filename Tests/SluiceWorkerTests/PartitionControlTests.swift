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
            // Another worker, with the same roster, agrees.
            #expect(PartitionControl.owner(queue: "ledger", partition: p, members: members.sorted()) == owner)
        }
        #expect(owned.values.sorted() == [4, 4, 4, 4])
        #expect(PartitionControl.owner(queue: "ledger", partition: 3, members: ["only"]) == "only")
        #expect(PartitionControl.owner(queue: "ledger", partition: 3, members: []) == nil)
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

    @Test("a partition is given up only while idle, at most every interval; a given-up consumer is re-registered")
    func yielding() {
        let control = PartitionControl()
        let consumer = BrokerConsumer(AsyncThrowingStream<BrokerDelivery, any Error> { $0.finish() }, cancel: {}, close: {})
        let key = PartitionControl.key("ledger", 3)
        control.register(key, consumer)
        #expect(control.beginDelivery(key))
        let t0 = ContinuousClock.now
        #expect(control.yieldIfIdle(key, every: .seconds(5), now: t0) == nil)
        control.endDelivery(key)
        #expect(control.yieldIfIdle(key, every: .seconds(5), now: t0) != nil)
        #expect(control.isYielded(key))
        // A delivery that arrives after the partition was given up never starts.
        #expect(!control.beginDelivery(key))
        #expect(control.takeYielded(key))
        #expect(!control.takeYielded(key))
        control.register(key, consumer)
        #expect(control.yieldIfIdle(key, every: .seconds(5), now: t0 + .seconds(1)) == nil)  // too soon
        #expect(control.yieldIfIdle(key, every: .seconds(5), now: t0 + .seconds(6)) != nil)
    }
}
