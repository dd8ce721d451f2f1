import Foundation
import SluiceCore
@testable import SluiceWorker
import Testing

@Suite("Rate limits: each worker's share and the spacing of its starts (no broker, no clock)")
struct RateScheduleTests {
    typealias Instant = ContinuousClock.Instant
    let t0 = ContinuousClock.now

    func beat(_ worker: String, keys: [String], state: String = "running", interval: Double = 1, at: Date = Date()) -> WorkerHeartbeat {
        WorkerHeartbeat(worker: worker, host: "h", pid: 1, queues: ["q"], concurrency: 1, inFlight: 0, processed: 0,
                        succeeded: 0, retried: 0, dead: 0, startedAt: Date(timeIntervalSince1970: 1_000_000), at: at, state: state, intervalSeconds: interval,
                        rateLimits: Dictionary(uniqueKeysWithValues: keys.map { ($0, 100) }))
    }

    func seconds(_ instant: Instant?) -> Double { instant.map { ($0 - t0).timeInterval } ?? -1 }

    @Test("alone, a worker starts at the whole limit, evenly spaced from now; nothing is banked while idle")
    func alone() {
        var s = RateSchedule(me: "me", limits: [RateLimit(.task("send"), perSecond: 10)])
        #expect(s.share(of: "task:send", now: t0) == 10)
        let starts = (0..<5).map { _ in seconds(s.reserve(["task:send"], now: t0)) }
        for (i, start) in starts.enumerated() { #expect(abs(start - Double(i) * 0.1) < 1e-6) }
        // Idle for ten seconds: the next start is now, not a burst of a hundred.
        let later = t0 + .seconds(10)
        #expect(abs(seconds(s.reserve(["task:send"], now: later)) - 10) < 1e-6)
        #expect(abs(seconds(s.reserve(["task:send"], now: later)) - 10.1) < 1e-6)
        // No limit applies: nil.
        #expect(s.reserve(["task:other"], now: t0) == nil)
    }

    @Test("peers that hold the same limit divide it; others, stopping ones and silent ones do not count")
    func shares() {
        var s = RateSchedule(me: "me", limits: [RateLimit(.task("send"), perSecond: 90), RateLimit(.queue("mail"), perSecond: 10)])
        s.record(beat("a", keys: ["task:send"]), now: t0)
        s.record(beat("b", keys: ["task:send", "queue:mail"]), now: t0)
        s.record(beat("c", keys: ["task:other"]), now: t0)
        s.record(beat("d", keys: ["task:send"], state: "stopping"), now: t0)
        s.record(beat("me", keys: ["task:send"]), now: t0)  // its own beat is not a peer
        #expect(s.share(of: "task:send", now: t0) == 30)
        #expect(s.share(of: "queue:mail", now: t0) == 5)
        #expect(s.share(of: "task:other", now: t0) == nil)
        // b beats again; a falls silent for more than three of its one-second intervals.
        s.record(beat("b", keys: ["task:send"]), now: t0 + .seconds(2))
        #expect(s.share(of: "task:send", now: t0 + .seconds(3)) == 30)
        #expect(s.share(of: "task:send", now: t0 + .milliseconds(3_100)) == 45)
        #expect(s.share(of: "queue:mail", now: t0 + .milliseconds(3_100)) == 10)
        // b says it is stopping: the whole limit.
        s.record(beat("b", keys: ["task:send"], state: "stopping"), now: t0 + .seconds(4))
        #expect(s.share(of: "task:send", now: t0 + .seconds(4)) == 90)
        // A new worker joins.
        s.record(beat("e", keys: ["task:send"]), now: t0 + .seconds(5))
        #expect(s.share(of: "task:send", now: t0 + .seconds(5)) == 45)
    }

    @Test("two workers with one id (host:pid, in containers of one pod) but different starts are two")
    func sameID() {
        var s = RateSchedule(me: "h:1", startedAt: Date(timeIntervalSince1970: 2_000_000), limits: [RateLimit(.task("send"), perSecond: 10)])
        var other = beat("h:1", keys: ["task:send"])
        s.record(other, now: t0)
        #expect(s.share(of: "task:send", now: t0) == 5)
        other.startedAt = Date(timeIntervalSince1970: 2_000_000)
        #expect(s.isMine(other))
    }

    @Test("an older beat heard late does not undo a newer one")
    func outOfOrder() {
        var s = RateSchedule(me: "me", limits: [RateLimit(.task("send"), perSecond: 10)])
        let now = Date()
        s.record(beat("a", keys: ["task:send"], state: "stopped", at: now), now: t0)
        s.record(beat("a", keys: ["task:send"], at: now - 5), now: t0)
        #expect(s.share(of: "task:send", now: t0) == 10)
    }

    @Test("a delivery under two limits starts when both allow, and uses a start of each")
    func twoLimits() {
        var s = RateSchedule(me: "me", limits: [RateLimit(.task("send"), perSecond: 10), RateLimit(.queue("mail"), perSecond: 2)])
        #expect(seconds(s.reserve(["task:send", "queue:mail"], now: t0)) == 0)
        // The queue's next start is 0.5 s away, the task's 0.1 s.
        #expect(abs(seconds(s.reserve(["task:send", "queue:mail"], now: t0)) - 0.5) < 1e-6)
        // Another task of the same queue: the queue's limit only.
        #expect(abs(seconds(s.reserve(["queue:mail"], now: t0)) - 1.0) < 1e-6)
        // The task under its own limit only: after its last start (0.5 s).
        #expect(abs(seconds(s.reserve(["task:send"], now: t0)) - 0.6) < 1e-6)
    }

    @Test("a start that came late (a stalled process) pushes the next one a spacing past it: no burst")
    func lateStart() {
        var s = RateSchedule(me: "me", limits: [RateLimit(.task("send"), perSecond: 10)])
        #expect(seconds(s.reserve(["task:send"], now: t0)) == 0)
        s.started(["task:send"], now: t0 + .seconds(2))
        #expect(abs(seconds(s.reserve(["task:send"], now: t0 + .seconds(2))) - 2.1) < 1e-6)
    }

    @Test("a share change spaces the starts reserved after it")
    func shareChange() {
        var s = RateSchedule(me: "me", limits: [RateLimit(.task("send"), perSecond: 10)])
        _ = s.reserve(["task:send"], now: t0)  // 0, next at 0.1
        s.record(beat("a", keys: ["task:send"]), now: t0)
        #expect(abs(seconds(s.reserve(["task:send"], now: t0)) - 0.1) < 1e-6)  // next at 0.3 (5/s)
        #expect(abs(seconds(s.reserve(["task:send"], now: t0)) - 0.3) < 1e-6)
    }
}

@Suite("Rate limits: parsing NAME=RATE")
struct RateLimitParsingTests {
    @Test("rates per second, minute and hour; task and queue scopes")
    func parses() throws {
        #expect(try RateLimit.parse("emails.send=100/s") == RateLimit(.task("emails.send"), perSecond: 100))
        #expect(try RateLimit.parse("x=600/m").perSecond == 10)
        #expect(try RateLimit.parse("x=36/h").perSecond == 0.01)
        #expect(try RateLimit.parse("x=2.5").perSecond == 2.5)
        #expect(try RateLimit.parse("a=b=5/s").scope == .task("a=b"))
        #expect(try RateLimit.parse("mail=50/s", queue: true).key == "queue:mail")
        #expect(RateLimit(.task("x"), perSecond: 100).rateDescription == "100/s")
        #expect(RateLimit(.task("x"), perSecond: 0.5).rateDescription == "30/m")
        #expect(try RateLimit.parse("x=1/h").rateDescription == "1/h")
        #expect(try RateLimit.parse("x=2.5/s").rateDescription == "2.5/s")
    }

    @Test("bad limits are refused with a message that says what is wanted")
    func refuses() {
        for text in ["x", "=5/s", "x=0/s", "x=-1/s", "x=abc", "x=5/d", "x=5/s/s", "x=nan", "x=inf", "x=2000000/s"] {
            #expect(throws: SluiceError.self, "\(text)") { try RateLimit.parse(text) }
        }
        #expect(throws: SluiceError.self) { try RateLimit.parse("bad queue=5/s", queue: true) }
        #expect(throws: SluiceError.self) { try RateLimit.parse("mail~high=5/s", queue: true) }
    }
}
