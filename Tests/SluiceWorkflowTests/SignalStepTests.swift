import Foundation
import SluiceWorkflow
import Testing

@Suite("Signal steps")
struct SignalStepTests {
    /// reserve → approval (signal) → charge.
    static func approval(timeout: Duration? = nil, onTimeout: SignalTimeout = .fail) -> WorkflowDefinition {
        WorkflowDefinition(name: "booking", defaultQueue: "q") {
            WorkflowStep.task("reserve", "reserve")
            WorkflowStep.signal("approval", "approved", after: ["reserve"], timeout: timeout, onTimeout: onTimeout)
            WorkflowStep.task("charge", "charge", after: ["approval"], arguments: ["by": "${steps.approval.output.by}"])
        }
    }

    @Test("a waiting step takes the signal: its output is the signal's data, and the run goes on")
    func waitThenSignal() throws {
        var r = try Drive(Self.approval())
        r.succeed("reserve")
        #expect(r.step("approval").status == .running)
        #expect(r.publishedSteps == ["reserve"], "a signal step publishes nothing")
        r.now += 1
        r.send(.signal(name: "other", id: "s0", data: "x", at: r.now))
        #expect(r.step("approval").status == .running, "another name does not end the wait")
        r.send(.signal(name: "approved", id: "s1", data: ["by": "ana"], at: r.now))
        #expect(r.step("approval").status == .succeeded)
        #expect(r.step("approval").output == ["by": "ana"])
        #expect(r.task("charge")?.arguments == ["by": "ana"])
        #expect(r.state.signals?.map(\.name) == ["other"], "the other signal is kept")
        r.succeed("charge")
        guard case .completed? = r.final else { Issue.record("not completed: \(String(describing: r.final))"); return }
    }

    @Test("a signal that comes before the wait is kept, and the step takes it when it starts; the oldest first")
    func signalFirst() throws {
        var r = try Drive(Self.approval())
        r.send(.signal(name: "approved", id: "s1", data: ["by": "first"], at: r.now))
        r.send(.signal(name: "approved", id: "s2", data: ["by": "second"], at: r.now))
        #expect(r.state.signals?.map(\.id) == ["s1", "s2"])
        #expect(r.step("approval").status == .waiting)
        r.succeed("reserve")
        #expect(r.step("approval").status == .succeeded)
        #expect(r.step("approval").output == ["by": "first"])
        #expect(r.state.signals?.map(\.id) == ["s2"])
        #expect(r.task("charge")?.arguments == ["by": "first"])
    }

    @Test("a signal sent twice (same id) applies once, before the wait and during it")
    func duplicates() throws {
        var r = try Drive(Self.approval())
        r.send(.signal(name: "approved", id: "s1", data: 1, at: r.now))
        r.send(.signal(name: "approved", id: "s1", data: 1, at: r.now))
        #expect(r.state.signals?.count == 1)
        r.succeed("reserve")
        #expect(r.state.signals == nil, "taken")
        // The same id again, now that nothing waits and the signal was taken: still nothing.
        r.send(.signal(name: "approved", id: "s1", data: 1, at: r.now))
        #expect(r.state.signals == nil)

        var w = try Drive(Self.approval())
        w.succeed("reserve")
        w.send(.signal(name: "approved", id: "a", data: 1, at: w.now))
        w.send(.signal(name: "approved", id: "a", data: 1, at: w.now))
        #expect(w.state.signals == nil, "the copy is not kept for a later step")
    }

    @Test("a timeout fails the step, or with onTimeout continue lets the run go on with timedOut; a signal in time cancels the timer")
    func timeouts() throws {
        var f = try Drive(Self.approval(timeout: .seconds(3600)))
        f.succeed("reserve")
        let timer = "run1/approval/0/~signal"
        #expect(f.timers[timer] == f.now + 3600)
        f.fire(timer)
        #expect(f.step("approval").status == .failed)
        #expect(f.step("approval").error == "no signal 'approved' within 1h")
        guard case .failed? = f.final else { Issue.record("the run did not fail"); return }
        // A signal after the run failed changes nothing.
        f.send(.signal(name: "approved", id: "late", data: 1, at: f.now))
        #expect(f.state.signals == nil)

        var c = try Drive(Self.approval(timeout: .seconds(60), onTimeout: .continue))
        c.succeed("reserve")
        c.fire(timer)
        #expect(c.step("approval").status == .succeeded)
        #expect(c.step("approval").output == ["timedOut": true])
        #expect(c.step("charge").status != .waiting, "the run went on")

        var s = try Drive(Self.approval(timeout: .seconds(60)))
        s.succeed("reserve")
        s.send(.signal(name: "approved", id: "x", data: ["by": "ana"], at: s.now))
        #expect(s.timers[timer] == nil, "the timer is cancelled")
        // A late firing (already removed or racing) is ignored.
        s.send(.timerFired(timerID: timer, at: s.now + 100))
        #expect(s.step("approval").status == .succeeded)
    }

    @Test("two steps waiting for one name: the first in definition order takes it; cancel ends a wait and its timer")
    func order() throws {
        let d = WorkflowDefinition(name: "two", defaultQueue: "q") {
            WorkflowStep.signal("first", "go", timeout: .seconds(10))
            WorkflowStep.signal("second", "go")
        }
        var r = try Drive(d)
        r.send(.signal(name: "go", id: "1", data: 1, at: r.now))
        #expect(r.step("first").status == .succeeded)
        #expect(r.step("second").status == .running)
        r.send(.cancel(reason: "no", at: r.now))
        #expect(r.step("second").status == .running || r.step("second").status == .skipped)
        #expect(r.timers.isEmpty)
        guard case .cancelled? = r.final else { Issue.record("not cancelled"); return }
    }

    @Test("paused: the step waits as ready and takes a kept signal on resume")
    func paused() throws {
        var r = try Drive(Self.approval())
        r.send(.pause(at: r.now))
        r.succeed("reserve")
        #expect(r.step("approval").status == .ready)
        r.send(.signal(name: "approved", id: "s", data: ["by": "bo"], at: r.now))
        #expect(r.state.signals?.count == 1)
        r.send(.resume(at: r.now))
        #expect(r.step("approval").output == ["by": "bo"])
        #expect(r.task("charge")?.arguments == ["by": "bo"])
    }

    @Test("a run keeps at most 100 signals no step took")
    func keptLimit() throws {
        var r = try Drive(Self.approval(), start: false)
        for i in 0..<150 { r.send(.signal(name: "x", id: "\(i)", data: nil, at: r.now)) }
        #expect(r.state.signals?.count == RunState.keptSignalsLimit)
        #expect(r.state.signals?.last?.id == "99")
    }

    @Test("definitions: YAML and JSON forms, and what is refused")
    func definitions() throws {
        let yaml = """
        name: booking
        steps:
          - id: approval
            signal: { name: approved, timeout: 72h, onTimeout: continue }
          - id: webhook
            signal: paid
        """
        let d = try WorkflowDefinition.decode(yaml: yaml)
        #expect(d.steps[0].kind == .signal(SignalSpec(name: "approved", timeoutMilliseconds: 72 * 3_600_000, onTimeout: .continue)))
        #expect(d.steps[1].kind == .signal(SignalSpec(name: "paid")))
        let again = try WorkflowDefinition.decode(json: Array(try JSONEncoder().encode(d)))
        #expect(again == d)
        for (bad, why) in [
            ("signal: { name: 'a b' }", "not valid"),
            ("signal: { name: ok, onTimeout: continue }", "needs a timeout"),
            ("signal: { name: ok, timeout: 0s }", "positive"),
            ("signal: { name: ok, when: now }", "when"),
        ] {
            let text = "name: w\nsteps:\n  - id: s\n    \(bad)\n"
            #expect(throws: (any Error).self, "\(bad)") { try WorkflowDefinition.decode(yaml: text) }
            do { _ = try WorkflowDefinition.decode(yaml: text) } catch { #expect("\(error)".contains(why), "\(bad): \(error)") }
        }
    }

    @Test("kept signals and their ids survive the stored form")
    func stored() throws {
        var r = try Drive(Self.approval())
        r.send(.signal(name: "approved", id: "s1", data: ["by": "ana", "n": [1, 2]], at: r.now))
        let bytes = r.state.storedJSON()
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        let back = try decoder.decode(RunState.self, from: Data(bytes))
        #expect(back.signals == r.state.signals)
        #expect(back.signalIDs == ["s1"])
    }
}
