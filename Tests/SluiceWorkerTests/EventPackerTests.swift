import Foundation
import SluiceCore
import SluiceTesting
import SluiceWire
@testable import SluiceWorker
import Synchronization
import Testing

/// The packer with a hand-driven broker: each send waits until the test releases it.
@Suite("Event packer")
struct EventPackerTests {
    /// Records each pack sent and holds its confirm until released.
    final class HeldBroker: Sendable {
        struct Sent { var routingKey: String; var bodies: [String] }
        private let state = Mutex<(sent: [Sent], held: [CheckedContinuation<Void, any Error>], failNext: Bool)>(([], [], false))

        var sent: [Sent] { state.withLock { $0.sent } }

        func send(_ message: OutboundMessage, _ delivery: BrokerDelivery?) async throws -> Bool {
            let bodies = try (JSONSerialization.jsonObject(with: Data(message.body)) as! [[String: Any]]).map { $0["taskID"] as! String }
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                state.withLock { $0.sent.append(Sent(routingKey: message.routingKey, bodies: bodies)); $0.held.append(c) }
            }
            return true
        }

        /// Confirms (or refuses) the oldest pack in flight.
        func release(failing: Bool = false) {
            let c = state.withLock { $0.held.isEmpty ? nil : $0.held.removeFirst() }
            if failing { c?.resume(throwing: SluiceError(.broker, "nacked")) } else { c?.resume() }
        }
    }

    /// Each publish's result by event id: true when confirmed.
    final class Results: Sendable {
        private let map = Mutex<[String: Bool]>([:])
        func set(_ id: String, _ ok: Bool) { map.withLock { $0[id] = ok } }
        var all: [String: Bool] { map.withLock { $0 } }
    }

    /// Waits (bounded) until `condition` holds: the packer has no event to await.
    static func until(_ what: String, _ condition: () -> Bool) async throws {
        let deadline = TestTime.deadline(10)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw TimedOut(what: what, seconds: TestTime.scaled(10)) }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    /// A delivery whose connection the test can declare lost.
    final class Receipt: DeliveryAcknowledger, @unchecked Sendable {
        private let stale = Mutex(false)
        func ack() async throws {}
        func reject(requeue: Bool) async throws {}
        var isStale: Bool { stale.withLock { $0 } }
        func lose() { stale.withLock { $0 = true } }
        var delivery: BrokerDelivery {
            BrokerDelivery(properties: BasicProperties(), body: [], redelivered: false, deliveryCount: 0, routingKey: "", acknowledger: self)
        }
    }

    static func message(_ id: String, key: String = "~wf.0.~pack.succeeded") -> OutboundMessage {
        OutboundMessage(exchange: "events", routingKey: key, body: Array(#"{"taskID":"\#(id)"}"#.utf8))
    }

    /// Publishes in a task of its own; the result lands in `results[id]`.
    static func publish(_ packer: EventPacker, _ id: String, key: String = "~wf.0.~pack.succeeded",
                        into results: Results) -> Task<Void, Never> {
        Task {
            let ok = (try? await packer.publish(message(id, key: key))) != nil
            results.set(id, ok)
        }
    }

    @Test("an event alone goes at once; those ready while a pack is in flight go together in the next, each answered after its own pack")
    func packsWhileInFlight() async throws {
        let broker = HeldBroker()
        let packer = EventPacker(send: broker.send)
        let results = Results()
        let first = Self.publish(packer, "a", into: results)
        try await Self.until("the first pack to be sent") { broker.sent.count == 1 }
        let rest = ["b", "c", "d"].map { Self.publish(packer, $0, into: results) }
        // They wait for the first pack's confirm: nothing more is sent meanwhile.
        try await Self.until("b, c and d to wait") { packer.waitingCount(routingKey: "~wf.0.~pack.succeeded") == 3 }
        #expect(broker.sent.count == 1)
        #expect(results.all.isEmpty, "nobody answered before the confirm")
        broker.release()
        await first.value
        #expect(results.all == ["a": true])
        try await Self.until("the second pack to be sent") { broker.sent.count == 2 }
        // (b, c and d were published by tasks of their own, in any order.)
        #expect(broker.sent.map { Set($0.bodies) } == [["a"], ["b", "c", "d"]])
        #expect(results.all.count == 1, "b, c and d wait for their own pack's confirm")
        broker.release()
        for task in rest { await task.value }
        #expect(results.all == ["a": true, "b": true, "c": true, "d": true])
    }

    @Test("a refused pack fails each of its events, and only those")
    func refusal() async throws {
        let broker = HeldBroker()
        let packer = EventPacker(send: broker.send)
        let results = Results()
        let first = Self.publish(packer, "a", into: results)
        try await Self.until("the first pack to be sent") { broker.sent.count == 1 }
        let second = [Self.publish(packer, "b", into: results), Self.publish(packer, "c", into: results)]
        try await Self.until("b and c to wait") { packer.waitingCount(routingKey: "~wf.0.~pack.succeeded") == 2 }
        broker.release(failing: true)
        await first.value
        try await Self.until("the second pack to be sent") { broker.sent.count == 2 }
        broker.release()
        for task in second { await task.value }
        #expect(results.all == ["a": false, "b": true, "c": true])
        // Nothing is left behind: the next event goes alone, at once.
        let late = Self.publish(packer, "d", into: results)
        try await Self.until("the third pack to be sent") { broker.sent.count == 3 }
        broker.release()
        await late.value
        #expect(broker.sent.last?.bodies == ["d"])
    }

    @Test("packs keep to their count and byte limits, oldest events first")
    func limits() async throws {
        let broker = HeldBroker()
        let packer = EventPacker(maxEvents: 2, maxBytes: 40, send: broker.send)
        let results = Results()
        let first = Self.publish(packer, "first", into: results)
        try await Self.until("the first pack to be sent") { broker.sent.count == 1 }
        var tasks: [Task<Void, Never>] = []
        // Each body is 15-16 bytes: two fit in 40; a long one goes alone.
        for id in ["e1", "e2", "e3", String(repeating: "x", count: 60), "e5"] {
            tasks.append(Self.publish(packer, id, into: results))
            try await Self.until("\(id) to wait") { packer.waitingCount(routingKey: "~wf.0.~pack.succeeded") == tasks.count }
        }
        broker.release()
        await first.value
        for expected in 2...5 {
            try await Self.until("pack \(expected) to be sent") { broker.sent.count == expected }
            broker.release()
        }
        for task in tasks { await task.value }
        #expect(broker.sent.map(\.bodies) == [["first"], ["e1", "e2"], ["e3"], [String(repeating: "x", count: 60)], ["e5"]])
        #expect(results.all.values.allSatisfy { $0 } && results.all.count == 6)
    }

    @Test("events whose connection was lost while they waited are failed as stale and not sent; the rest go")
    func staleWhileWaiting() async throws {
        let broker = HeldBroker()
        let packer = EventPacker(send: broker.send)
        let results = Results()
        let first = Self.publish(packer, "a", into: results)
        try await Self.until("the first pack to be sent") { broker.sent.count == 1 }
        let lost = Receipt(), kept = Receipt()
        let waiting = [("b", lost), ("c", kept)].map { id, receipt in
            Task {
                let ok = (try? await packer.publish(Self.message(id), settling: receipt.delivery)) != nil
                results.set(id, ok)
            }
        }
        try await Self.until("b and c to wait") { packer.waitingCount(routingKey: "~wf.0.~pack.succeeded") == 2 }
        lost.lose()
        broker.release()
        await first.value
        try await Self.until("the second pack to be sent") { broker.sent.count == 2 }
        broker.release()
        for task in waiting { await task.value }
        #expect(broker.sent.map(\.bodies) == [["a"], ["c"]])
        #expect(results.all == ["a": true, "b": false, "c": true])
    }

    @Test("events enqueued without waiting share packs with waiting callers; each is told after its own pack, a refusal and a lost connection too")
    func enqueuedEvents() async throws {
        let broker = HeldBroker()
        let packer = EventPacker(send: broker.send)
        let results = Results()
        let told = Mutex<[String: String]>([:])
        @Sendable func tell(_ id: String) -> EventPacker.Settle {
            { result in
                let outcome = switch result {
                case .success(let routed): routed ? "confirmed" : "unroutable"
                case .failure(let error): PublishFailure.isStale(error) ? "stale" : "failed"
                }
                told.withLock { $0[id] = outcome }
            }
        }
        packer.enqueue(Self.message("a"), settling: nil, then: tell("a"))
        try await Self.until("the first pack to be sent") { broker.sent.count == 1 }
        let lost = Receipt()
        packer.enqueue(Self.message("b"), settling: nil, then: tell("b"))
        packer.enqueue(Self.message("c"), settling: lost.delivery, then: tell("c"))
        let waiting = Self.publish(packer, "d", into: results)
        try await Self.until("b, c and d to wait") { packer.waitingCount(routingKey: "~wf.0.~pack.succeeded") == 3 }
        #expect(told.withLock { $0.isEmpty }, "nobody is told before the confirm")
        lost.lose()
        broker.release()
        try await Self.until("a to be told") { told.withLock { $0["a"] } != nil }
        try await Self.until("the second pack to be sent") { broker.sent.count == 2 }
        #expect(broker.sent.map(\.bodies) == [["a"], ["b", "d"]])
        // Told at once, not after the pack it stayed out of.
        try await Self.until("c to be told") { told.withLock { $0["c"] } != nil }
        #expect(told.withLock { $0 } == ["a": "confirmed", "c": "stale"], "b waits for its own pack")
        broker.release(failing: true)
        await waiting.value
        try await Self.until("b to be told") { told.withLock { $0["b"] } != nil }
        #expect(told.withLock { $0 } == ["a": "confirmed", "b": "failed", "c": "stale"])
        #expect(results.all == ["d": false])
    }

    @Test("each key has its own pack in flight")
    func keysApart() async throws {
        let broker = HeldBroker()
        let packer = EventPacker(send: broker.send)
        let results = Results()
        let a = Self.publish(packer, "a", key: "~wf.0.~pack.succeeded", into: results)
        let b = Self.publish(packer, "b", key: "~wf.1.~pack.succeeded", into: results)
        let c = Self.publish(packer, "c", key: "~wf.0.~pack.dead", into: results)
        try await Self.until("three packs to be sent") { broker.sent.count == 3 }
        #expect(Set(broker.sent.map(\.routingKey)) == ["~wf.0.~pack.succeeded", "~wf.1.~pack.succeeded", "~wf.0.~pack.dead"])
        for _ in 0..<3 { broker.release() }
        for task in [a, b, c] { await task.value }
        #expect(results.all == ["a": true, "b": true, "c": true])
    }
}

@Suite("Step outcomes in packs")
struct PackedOutcomeTests {
    static func step(bucket: Int?) -> TaskEnvelope {
        var task = SettlementStateMachineTests.task()
        task.workflowRunID = "run-1"
        task.workflowStep = "s"
        task.eventPackBucket = bucket
        return task
    }

    @Test("a step whose coordinator asked for packs reports its outcome on the pack key; the event is the same")
    func packKey() throws {
        var m = SettlementStateMachineTests.machine(Self.step(bucket: 7))
        _ = SettlementStateMachineTests.toHandler(&m)
        let message = SettlementStateMachineTests.published(m.handlerFinished(.success(nil), milliseconds: 1, now: SettlementStateMachineTests.now, jitter: 0))
        #expect(message?.routingKey == "~wf.7.~pack.succeeded")
        #expect(try message.map { try TaskEvent.decode($0.body) }?.taskID == "t-1")

        var r = SettlementStateMachineTests.machine(Self.step(bucket: 7))
        _ = SettlementStateMachineTests.toHandler(&r)
        let retry = r.handlerFinished(.failure(TaskFailure(kind: "smtp", "down")), milliseconds: 1, now: SettlementStateMachineTests.now, jitter: 0)
        guard case .publish = retry else { Issue.record("no retry copy: \(retry)"); return }
        let event = r.published()
        guard case .publishEvent(let retrying) = event else { Issue.record("no retrying event: \(event)"); return }
        #expect(retrying.routingKey == "~wf.7.~pack.retrying")
    }

    @Test("without the header, or for a plain task, the event keeps its own key")
    func ownKey() {
        var m = SettlementStateMachineTests.machine(Self.step(bucket: nil))
        _ = SettlementStateMachineTests.toHandler(&m)
        let message = SettlementStateMachineTests.published(m.handlerFinished(.success(nil), milliseconds: 1, now: SettlementStateMachineTests.now, jitter: 0))
        #expect(message?.routingKey.hasPrefix("~wf.") == true)
        #expect(message.map { Topology.isEventPackKey($0.routingKey) } == false)

        var plain = SettlementStateMachineTests.task()
        plain.otherHeaders[WireHeader.eventPack] = .int64(7)
        var p = SettlementStateMachineTests.machine(plain)
        _ = SettlementStateMachineTests.toHandler(&p)
        let plainMessage = SettlementStateMachineTests.published(p.handlerFinished(.success(nil), milliseconds: 1, now: SettlementStateMachineTests.now, jitter: 0))
        #expect(plainMessage?.routingKey == "emails.succeeded")
    }
}
