import Foundation
import SluiceCore
@testable import SluiceWorker
import SluiceTesting
import Synchronization
import Testing

@Suite("Rate limits: deliveries waiting for their start")
struct RateWaitsTests {
    @Test("a delivery whose connection is gone is dropped before it costs a start")
    func stale() async throws {
        let gate = RateGate(me: "me", limits: [RateLimit(.task("slow"), perSecond: 1.0 / 86_400)])
        let waits = RateWaits(gate: gate)
        let outcomes = Mutex<[String]>([])
        for (n, stale) in [(1, true), (2, false), (3, false)] {
            waits.submit(keys: ["task:slow"], isStale: { stale }) { run, granted in
                outcomes.withLock { $0.append("\(n) \(run)") }
                granted()
            }
        }
        // 1 is dropped, 2 starts at once, 3 waits a day.
        try await within(60, "the second delivery's start") {
            while !outcomes.withLock({ $0.contains("2 true") }) { try await Task.sleep(for: .milliseconds(5)) }
        }
        waits.abandonWaiting()
        #expect(outcomes.withLock { $0 } == ["1 false", "2 true", "3 false"])
    }

    @Test("a start counts when the delivery gets its slot: one that waited for a slot pushes the next a spacing past it")
    func countedAtSlot() async throws {
        let gate = RateGate(me: "me", limits: [RateLimit(.task("t"), perSecond: 10)])
        let waits = RateWaits(gate: gate)
        let starts = Mutex<[ContinuousClock.Instant]>([])
        let t0 = ContinuousClock.now
        for n in 1...2 {
            waits.submit(keys: ["task:t"]) { _, granted in
                starts.withLock { $0.append(.now) }
                // The first waits 300 ms for a slot.
                if n == 1 { Task { try? await Task.sleep(for: .milliseconds(300)); granted() } } else { granted() }
            }
        }
        try await within(60, "both starts") {
            while starts.withLock({ $0.count }) < 2 { try await Task.sleep(for: .milliseconds(5)) }
        }
        let second = (starts.withLock { $0[1] } - t0).timeInterval
        #expect(second >= 0.4, "the second started \(second) s in, less than a spacing after the first got its slot")
    }

    @Test("one lane per set of limits, first come first started; a slow lane holds up no other; shutdown hands back the rest")
    func lanes() async throws {
        // 1 start per 100 s for `slow`: its first starts at once, the next not in this test.
        let gate = RateGate(me: "me", limits: [RateLimit(.task("slow"), perSecond: 0.01), RateLimit(.task("fast"), perSecond: 1000)])
        let waits = RateWaits(gate: gate)
        let started = Mutex<[String]>([])
        let handedBack = Mutex<[String]>([])
        func submit(_ name: String, _ n: Int) {
            waits.submit(keys: gate.keys(taskName: name, queueKey: nil)!) { run, granted in
                if run { started.withLock { $0.append("\(name)\(n)") } } else { handedBack.withLock { $0.append("\(name)\(n)") } }
                granted()
            }
        }
        for n in 1...3 { submit("slow", n) }
        for n in 1...3 { submit("fast", n) }
        try await within(60, "the fast lane's three starts") {
            while !started.withLock({ $0.contains("fast3") }) { try await Task.sleep(for: .milliseconds(5)) }
        }
        #expect(started.withLock { $0.filter { $0.hasPrefix("fast") } } == ["fast1", "fast2", "fast3"])
        try await within(60, "the slow lane's first start") {
            while !started.withLock({ $0.contains("slow1") }) { try await Task.sleep(for: .milliseconds(5)) }
        }
        #expect(waits.count == 2)
        waits.abandonWaiting()
        #expect(handedBack.withLock { $0 } == ["slow2", "slow3"])
        submit("fast", 4)
        #expect(handedBack.withLock { $0 } == ["slow2", "slow3", "fast4"])
        #expect(waits.count == 0)
        #expect(gate.keys(taskName: "other", queueKey: nil) == nil)
    }
}
