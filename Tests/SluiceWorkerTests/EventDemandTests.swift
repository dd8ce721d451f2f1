import SluiceWorker
import Testing

@Suite("Whether anybody listens to a task's events")
struct EventDemandTests {
    let t0 = ContinuousClock.now

    @Test("an unroutable key is held back for the hold, then asked again; a routed one is wanted at once")
    func hold() {
        var demand = EventDemand(hold: .seconds(5))
        #expect(demand.wanted("emails.succeeded", now: t0))
        demand.unroutable("emails.succeeded", now: t0)
        #expect(!demand.wanted("emails.succeeded", now: t0 + .seconds(1)))
        #expect(demand.wanted("emails.dead", now: t0 + .seconds(1)), "other keys are not affected")
        #expect(demand.wanted("emails.succeeded", now: t0 + .seconds(5)), "after the hold the next event asks again")
        demand.unroutable("emails.succeeded", now: t0 + .seconds(5))
        demand.routed("emails.succeeded")
        #expect(demand.wanted("emails.succeeded", now: t0 + .seconds(6)))
    }

    @Test("workflow steps' events are never held back, and a zero hold holds nothing")
    func neverHeld() {
        var demand = EventDemand(hold: .seconds(5))
        demand.unroutable("~wf.3.default.succeeded", now: t0)
        #expect(demand.wanted("~wf.3.default.succeeded", now: t0))
        var off = EventDemand(hold: .zero)
        off.unroutable("emails.succeeded", now: t0)
        #expect(off.wanted("emails.succeeded", now: t0))
    }

    @Test("many queues: stale keys are forgotten, live ones kept")
    func bounded() {
        var demand = EventDemand(hold: .seconds(5))
        for i in 0..<1024 { demand.unroutable("q\(i).succeeded", now: t0) }
        demand.unroutable("late.succeeded", now: t0 + .seconds(10))
        #expect(!demand.wanted("late.succeeded", now: t0 + .seconds(11)))
        #expect(demand.wanted("q1.succeeded", now: t0 + .seconds(11)))
    }
}
