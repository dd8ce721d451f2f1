@testable import SluiceAMQP
import Testing

@Suite("ConfirmTracker")
struct ConfirmTrackerTests {
    typealias Tracker = ConfirmTracker<String>

    func tracker(_ names: [String], mandatory: Bool = false, key: String = "k") -> Tracker {
        var t = Tracker()
        for n in names { _ = t.register(n, mandatory: mandatory, exchange: "x", routingKey: key) }
        return t
    }

    @Test("sequence numbers start at 1 and count up")
    func numbering() {
        var t = Tracker()
        #expect(t.register("a", mandatory: false, exchange: "", routingKey: "q") == 1)
        #expect(t.register("b", mandatory: false, exchange: "", routingKey: "q") == 2)
        #expect(t.outstanding == 2)
    }

    @Test("a single ack settles exactly that publish, in or out of order")
    func singleAcks() {
        var t = tracker(["a", "b", "c"])
        #expect(t.confirm(upTo: 2, multiple: false, nack: false).map(\.0) == ["b"])
        #expect(t.outstanding == 2)
        #expect(t.confirm(upTo: 1, multiple: false, nack: false).map(\.0) == ["a"])
        #expect(t.confirm(upTo: 3, multiple: false, nack: false).map(\.0) == ["c"])
        #expect(t.outstanding == 0)
        // A duplicate or unknown tag settles nothing.
        #expect(t.confirm(upTo: 3, multiple: false, nack: false).isEmpty)
    }

    @Test("multiple settles everything up to the tag, skipping already settled ones")
    func multipleAcks() {
        var t = tracker(["a", "b", "c", "d"])
        _ = t.confirm(upTo: 2, multiple: false, nack: false)
        let settled = t.confirm(upTo: 3, multiple: true, nack: false)
        #expect(settled.map(\.0) == ["a", "c"])
        #expect(settled.allSatisfy { $0.1 == .acked })
        #expect(t.outstanding == 1)
    }

    @Test("nack settles as nacked")
    func nacks() {
        var t = tracker(["a", "b"])
        let settled = t.confirm(upTo: 2, multiple: true, nack: true)
        #expect(settled.map(\.1) == [.nacked, .nacked])
    }

    @Test("a return marks the oldest matching mandatory publish; its ack reports it")
    func returns() {
        var t = Tracker()
        _ = t.register("plain", mandatory: false, exchange: "x", routingKey: "k")
        _ = t.register("m1", mandatory: true, exchange: "x", routingKey: "other")
        _ = t.register("m2", mandatory: true, exchange: "x", routingKey: "k")
        let matched = t.returned(exchange: "x", routingKey: "k", replyCode: 312, replyText: "NO_ROUTE")
        let unmatched = t.returned(exchange: "y", routingKey: "k", replyCode: 312, replyText: "NO_ROUTE")
        #expect(matched)
        #expect(!unmatched)
        let settled = t.confirm(upTo: 3, multiple: true, nack: false)
        #expect(settled.map(\.0) == ["plain", "m1", "m2"])
        #expect(settled[2].1 == .returned(replyCode: 312, replyText: "NO_ROUTE"))
        #expect(settled[1].1 == .acked)
    }

    @Test("failAll hands back every unsettled waiter; reset restarts numbering")
    func failAndReset() {
        var t = tracker(["a", "b", "c"])
        _ = t.confirm(upTo: 2, multiple: false, nack: false)
        #expect(t.failAll() == ["a", "c"])
        #expect(t.outstanding == 0)
        _ = t.register("d", mandatory: false, exchange: "", routingKey: "")
        #expect(t.reset() == ["d"])
        #expect(t.register("e", mandatory: false, exchange: "", routingKey: "") == 1)
    }
}
