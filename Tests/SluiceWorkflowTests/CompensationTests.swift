import Foundation
import SluiceCore
import SluiceWorkflow
import Testing

@Suite("Compensation (sagas)")
struct CompensationTests {
    /// flight → hotel → charge → confirm; flight, hotel and charge can be undone.
    static func booking() -> WorkflowDefinition {
        WorkflowDefinition(name: "booking", defaultQueue: "q") {
            WorkflowStep.task("flight", "flight.reserve")
                .compensated(by: "flight.cancel", arguments: ["reservation": "${output.id}", "trip": "${input.trip}"])
            WorkflowStep.task("hotel", "hotel.reserve", after: ["flight"])
                .compensated(by: "hotel.cancel", arguments: ["reservation": "${steps.hotel.output.id}"], maxAttempts: 5)
            WorkflowStep.task("charge", "card.charge", after: ["hotel"]).compensated(by: "card.refund")
            WorkflowStep.task("confirm", "mail.confirm", after: ["charge"])
        }
    }

    /// The compensation tasks published so far, in order.
    static func undos(_ r: Drive) -> [StepTask] { r.published.filter { $0.taskID.hasSuffix("/~undo") } }

    static func settle(_ r: inout Drive, _ task: StepTask?, succeeded: Bool = true) {
        guard let task else { Issue.record("no such compensation task"); return }
        r.now += 1
        if succeeded {
            r.send(.taskSucceeded(taskID: task.taskID, attempt: 1, output: nil, at: r.now))
        } else {
            r.send(.taskDead(taskID: task.taskID, attempt: 5, reason: "max_attempts", error: "no such booking", at: r.now))
        }
    }

    @Test("a failed step: the completed steps are compensated once each, the last completed first, with their outputs")
    func booking() throws {
        var r = try Drive(Self.booking(), input: ["trip": "t1"])
        r.succeed("flight", ["id": "F1"])
        r.succeed("hotel", ["id": "H1"])
        r.dead("charge", "card declined")
        #expect(r.state.status == .compensating)
        #expect(r.final == nil, "the run is not over while it compensates")
        #expect(r.state.compensation?.order == ["hotel", "flight"], "the failed step is not compensated; the rest in reverse order")
        #expect(Self.undos(r).map(\.name) == ["hotel.cancel"], "one at a time")
        let hotel = Self.undos(r)[0]
        #expect(hotel.taskID == "run1/hotel/0/~undo")
        #expect(hotel.arguments == ["reservation": "H1"])
        #expect(hotel.maxAttempts == 5)
        #expect(hotel.stepID == "hotel")
        Self.settle(&r, hotel)
        #expect(Self.undos(r).map(\.name) == ["hotel.cancel", "flight.cancel"])
        #expect(Self.undos(r)[1].arguments == ["reservation": "F1", "trip": "t1"])
        // The hotel's outcome delivered again changes nothing.
        Self.settle(&r, hotel)
        #expect(Self.undos(r).count == 2)
        #expect(r.state.compensation?.done == 1)
        Self.settle(&r, Self.undos(r)[1])
        #expect(r.state.status == .compensated)
        #expect(r.state.finishedAt == r.now)
        #expect(r.step("hotel").compensation?.status == .succeeded)
        #expect(r.step("flight").compensation?.status == .succeeded)
        #expect(r.step("charge").compensation == nil)
        #expect(r.step("confirm").status == .skipped, "over for good: what never started never will")
        #expect(r.state.error?.contains("card declined") == true)
        guard case .failed(let reason)? = r.final else { Issue.record("the run did not end failed: \(String(describing: r.final))"); return }
        #expect(reason.contains("charge"))
        #expect(Self.undos(r).count == 2, "each compensation published once")
    }

    @Test("steps that completed in parallel are undone in reverse order of completion, not of definition")
    func completionOrder() throws {
        let d = WorkflowDefinition(name: "trip", defaultQueue: "q") {
            WorkflowStep.task("a", "a").compensated(by: "undo.a")
            WorkflowStep.task("b", "b").compensated(by: "undo.b")
            WorkflowStep.task("c", "c").compensated(by: "undo.c")
            WorkflowStep.task("d", "d")
        }
        var r = try Drive(d)
        r.succeed("b")
        r.succeed("c")
        r.succeed("a")
        r.dead("d")
        #expect(r.state.compensation?.order == ["a", "c", "b"])
        for _ in 0..<3 { Self.settle(&r, Self.undos(r).last) }
        #expect(Self.undos(r).map(\.name) == ["undo.a", "undo.c", "undo.b"])
        #expect(r.state.status == .compensated)
    }

    @Test("a compensable step still running is waited for: undone if it succeeds, left alone if it fails")
    func waitsForRunning() throws {
        let d = WorkflowDefinition(name: "w", defaultQueue: "q") {
            WorkflowStep.task("slow", "slow").compensated(by: "undo.slow")
            WorkflowStep.task("other", "other").compensated(by: "undo.other")
            WorkflowStep.task("bad", "bad")
        }
        var r = try Drive(d)
        r.succeed("other")
        r.dead("bad")
        #expect(r.state.status == .compensating)
        #expect(r.state.compensation?.order == nil)
        #expect(Self.undos(r).isEmpty, "nothing is undone while 'slow' may still complete")
        r.succeed("slow")
        #expect(r.state.compensation?.order == ["slow", "other"])
        #expect(Self.undos(r).map(\.name) == ["undo.slow"])

        var f = try Drive(d)
        f.succeed("other")
        f.dead("bad")
        f.dead("slow")
        #expect(f.state.compensation?.order == ["other"])
        Self.settle(&f, Self.undos(f).first)
        #expect(f.state.status == .compensated)
    }

    @Test("a map's compensation runs for each succeeded element, last first, up to its parallelism, with item, index and output")
    func map() throws {
        let d = WorkflowDefinition(name: "m", defaultQueue: "q") {
            WorkflowStep.map("each", over: "input.items", task: "book", maxParallel: 2)
                .compensated(by: "unbook", arguments: ["item": "${item}", "i": "${index}", "ref": "${output}"])
        }
        var r = try Drive(d, input: ["items": ["a", "b", "c", "d", "e"]])
        r.succeed("each", index: 0, "r0")
        r.succeed("each", index: 1, "r1")
        r.succeed("each", index: 2, "r2")
        r.dead("each", index: 3)
        r.succeed("each", index: 4, "r4")
        #expect(r.step("each").status == .failed)
        #expect(r.state.status == .compensating)
        #expect(Self.undos(r).map(\.index) == [4, 2], "from the last succeeded element down, two at a time")
        #expect(Self.undos(r)[0].arguments == ["item": "e", "i": 4, "ref": "r4"])
        #expect(Self.undos(r)[0].taskID == "run1/each/0/4/~undo")
        Self.settle(&r, Self.undos(r)[1])
        #expect(Self.undos(r).map(\.index) == [4, 2, 1])
        Self.settle(&r, Self.undos(r)[1])  // again: nothing
        #expect(Self.undos(r).count == 3)
        Self.settle(&r, Self.undos(r)[0])
        #expect(Self.undos(r).map(\.index) == [4, 2, 1, 0])
        #expect(r.state.status == .compensating)
        Self.settle(&r, Self.undos(r)[2])
        Self.settle(&r, Self.undos(r)[3])
        #expect(r.state.status == .compensated)
        #expect(r.step("each").compensation?.done == 4)
    }

    @Test("a compensable map decided early (failFast): its elements still running are waited for, and undone if they succeed")
    func failFastMap() throws {
        let d = WorkflowDefinition(name: "ff", defaultQueue: "q") {
            WorkflowStep.map("each", over: "input.items", task: "book", join: .failFast).compensated(by: "unbook", arguments: ["i": "${index}"])
        }
        var r = try Drive(d, input: ["items": [1, 2, 3]])
        r.succeed("each", index: 0)
        r.dead("each", index: 1)
        #expect(r.step("each").status == .failed)
        #expect(r.state.status == .compensating)
        #expect(Self.undos(r).isEmpty, "element 2 still runs")
        r.succeed("each", index: 2)
        #expect(Self.undos(r).map(\.index).sorted { ($0 ?? 0) < ($1 ?? 0) } == [0, 2], "the late element is undone too")
        for undo in Self.undos(r) { Self.settle(&r, undo) }
        #expect(r.state.status == .compensated)
    }

    @Test("a compensation that fails for good stops the rest: compensation_failed, and the run ends once")
    func compensationFails() throws {
        var r = try Drive(Self.booking())
        r.succeed("flight", ["id": "F1"])
        r.succeed("hotel", ["id": "H1"])
        r.dead("charge")
        r.now += 1
        r.send(.taskRetrying(taskID: "run1/hotel/0/~undo", attempt: 1, error: "busy", at: r.now))
        #expect(r.step("hotel").compensation?.attempts == 1)
        Self.settle(&r, Self.undos(r).first, succeeded: false)
        #expect(r.state.status == .compensationFailed)
        #expect(r.state.compensation?.error?.contains("hotel") == true)
        #expect(Self.undos(r).map(\.name) == ["hotel.cancel"], "the flight is not cancelled after the hotel could not be")
        guard case .failed(let reason)? = r.final else { Issue.record("no final failure"); return }
        #expect(reason.contains("compensation failed"))
        #expect(r.state.status.isFinal)
    }

    @Test("cancel compensates too (revoking what runs); a cancel while compensating changes nothing")
    func cancel() throws {
        var r = try Drive(Self.booking(), input: ["trip": "t1"])
        r.succeed("flight", ["id": "F1"])
        r.now += 1
        r.send(.cancel(reason: "customer changed their mind", at: r.now))
        #expect(r.revoked == ["run1/hotel/0"])
        #expect(r.state.status == .compensating)
        #expect(Self.undos(r).isEmpty, "the hotel reservation may have started: its outcome is awaited")
        r.dead("hotel", "revoked")
        #expect(Self.undos(r).map(\.name) == ["flight.cancel"])
        Self.settle(&r, Self.undos(r).first)
        #expect(r.state.status == .compensated)
        #expect(r.state.compensation?.cause == .cancelled)
        guard case .cancelled? = r.final else { Issue.record("not cancelled: \(String(describing: r.final))"); return }

        var s = try Drive(Self.booking(), input: ["trip": "t1"])
        s.succeed("flight", ["id": "F1"])
        s.succeed("hotel", ["id": "H1"])
        s.dead("charge")
        s.now += 1
        #expect(s.send(.cancel(reason: "stop", at: s.now)).isEmpty)
        #expect(s.state.status == .compensating)
        #expect(s.revoked.isEmpty)
        Self.settle(&s, Self.undos(s).first)
        #expect(Self.undos(s).map(\.name) == ["hotel.cancel", "flight.cancel"], "compensation goes on")
        Self.settle(&s, Self.undos(s).last)
        #expect(s.state.status == .compensated)
    }

    @Test("with nothing completed to undo, a run fails (and can be retried) as before")
    func nothingToUndo() throws {
        var r = try Drive(Self.booking())
        r.dead("flight")
        #expect(r.state.status == .failed)
        #expect(r.state.compensation == nil)
        r.send(.retryStep(stepID: "flight", rerun: false, at: r.now))
        #expect(r.state.status == .running)
    }

    @Test("signals are refused while compensating; the stored form keeps the compensation")
    func storedAndSignals() throws {
        var r = try Drive(Self.booking(), input: ["trip": "t1"])
        r.succeed("flight", ["id": "F1"])
        r.succeed("hotel", ["id": "H1"])
        r.dead("charge")
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        let back = try decoder.decode(RunState.self, from: Data(r.state.storedJSON()))
        #expect(back == r.state)
        #expect(back.compensation?.order == ["hotel", "flight"])
        #expect(back.steps["hotel"]?.compensation?.status == .running)
        // A machine restored from it goes on where it was.
        var restored = try WorkflowStateMachine(definition: Self.booking(), state: back)
        let actions = restored.handle(.taskSucceeded(taskID: "run1/hotel/0/~undo", attempt: 1, output: nil, at: r.now + 1))
        guard case .publish(let tasks)? = actions.first else { Issue.record("nothing published: \(actions)"); return }
        #expect(tasks.map(\.taskID) == ["run1/flight/0/~undo"])
        #expect(restored.handle(.signal(name: "x", id: "s", data: nil, at: r.now)).isEmpty)
        #expect(restored.state.signals == nil, "a compensating run takes no signals")

        // A compensation whose arguments cannot be made (no input.trip) fails, and says why.
        var missing = try Drive(Self.booking())
        missing.succeed("flight", ["id": "F1"])
        missing.dead("hotel")
        #expect(missing.state.status == .compensationFailed)
        #expect(missing.state.compensation?.error?.contains("arguments") == true, "\(String(describing: missing.state.compensation))")

        var m = try Drive(WorkflowDefinition(name: "m", defaultQueue: "q") {
            WorkflowStep.map("each", over: "input.items", task: "book").compensated(by: "unbook")
            WorkflowStep.task("bad", "bad", after: ["each"])
        }, input: ["items": [1, 2, 3]])
        for i in 0..<3 { m.succeed("each", index: i) }
        m.dead("bad")
        let mapBack = try decoder.decode(RunState.self, from: Data(m.state.storedJSON(elementsAsRows: true)))
        #expect(mapBack.steps["each"]?.compensation == m.state.steps["each"]?.compensation)
        #expect(mapBack.steps["each"]?.compensation?.running == [2, 1, 0])
    }

    @Test("definitions: YAML, JSON, the DSL agree; what is refused")
    func definitions() throws {
        let yaml = """
        name: booking
        queue: q
        steps:
          - id: flight
            task: flight.reserve
            compensate: { task: flight.cancel, arguments: { id: "${output.id}" }, maxAttempts: 9, retry: { base: 2s } }
          - id: each
            map: { over: input.rooms, task: room.book }
            compensate: { task: room.free, arguments: { room: "${item}", n: "${index}" } }
        """
        let d = try WorkflowDefinition.decode(yaml: yaml)
        #expect(d.steps[0].compensation?.name == "flight.cancel")
        #expect(d.steps[0].compensation?.maxAttempts == 9)
        #expect(d.steps[0].compensation?.retry?.baseMilliseconds == 2000)
        #expect(d.steps[1].compensation?.name == "room.free")
        #expect(try WorkflowDefinition.decode(json: Array(try JSONEncoder().encode(d))) == d)
        for (bad, why) in [
            ("- id: j\n    join: all\n    after: [a]\n    compensate: { task: x }", "only task and map steps"),
            ("- id: t\n    task: x\n    compensate: { task: y, arguments: { i: \"${item}\" } }", "outside a map step"),
            ("- id: t\n    task: x\n    compensate: { task: y, timeout: 5s }", "timeout"),
            ("- id: t\n    task: x\n    compensate: { task: y, arguments: { i: \"${steps.later.output}\" } }", "later"),
            ("- id: t\n    task: x\n    compensate: { task: y, maxAttempts: 0 }", "maxAttempts"),
        ] {
            let text = "name: w\nqueue: q\nsteps:\n  - id: a\n    task: a\n  \(bad)\n  - id: later\n    task: l\n    after: [a]\n"
            do {
                _ = try WorkflowDefinition.decode(yaml: text)
                Issue.record("accepted: \(bad)")
            } catch {
                #expect("\(error)".contains(why), "\(bad): \(error)")
            }
        }
    }
}

@Suite("Run concurrency: definitions and keys")
struct ConcurrencySpecTests {
    @Test("YAML, JSON and the DSL agree; a run's slot is its rendered key and the limit; what is refused")
    func definitions() throws {
        let yaml = """
        name: sync
        queue: q
        concurrency: { limit: 1, key: "${input.customer}" }
        steps:
          - { id: a, task: t }
        """
        let d = try WorkflowDefinition.decode(yaml: yaml)
        #expect(d.concurrency == .perKey("${input.customer}", limit: 1))
        #expect(try WorkflowDefinition.decode(json: Array(try JSONEncoder().encode(d))) == d)
        let dsl = WorkflowDefinition(name: "sync", defaultQueue: "q", concurrency: .perKey("${input.customer}", limit: 1)) {
            WorkflowStep.task("a", "t")
        }
        #expect(dsl == d)

        let machine = try WorkflowStateMachine(definition: d, runID: "r", input: ["customer": "acme"], createdAt: Date())
        #expect(machine.state.slot == RunSlot(key: "acme", limit: 1))
        let numeric = try WorkflowStateMachine(definition: d, runID: "r", input: ["customer": 42], createdAt: Date())
        #expect(numeric.state.slot?.key == "42")
        let long = try WorkflowStateMachine(definition: d, runID: "r", input: ["customer": .string(String(repeating: "x", count: 500))], createdAt: Date())
        #expect((long.state.slot?.key.utf8.count ?? 0) <= ConcurrencySpec.maxKeyBytes)
        #expect(throws: WorkflowError.self) { try WorkflowStateMachine(definition: d, runID: "r", input: [:], createdAt: Date()) }
        #expect(throws: WorkflowError.self) { try WorkflowStateMachine(definition: d, runID: "r", input: ["customer": nil], createdAt: Date()) }

        let overall = WorkflowDefinition(name: "o", defaultQueue: "q", concurrency: ConcurrencySpec(limit: 3)) { WorkflowStep.task("a", "t") }
        let free = try WorkflowStateMachine(definition: overall, runID: "r", input: [:], createdAt: Date())
        #expect(free.state.slot == RunSlot(key: "", limit: 3))
        #expect(try WorkflowStateMachine(definition: dsl.with(concurrency: nil), runID: "r", input: [:], createdAt: Date()).state.slot == nil)

        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        #expect(try decoder.decode(RunState.self, from: Data(machine.state.storedJSON())).slot == machine.state.slot)

        for (bad, why) in [
            ("concurrency: { limit: 0 }", "1 or more"),
            ("concurrency: { limit: 1, key: \"${steps.a.output}\" }", "only the input"),
            ("concurrency: { limit: 1, per: x }", "per"),
        ] {
            do {
                _ = try WorkflowDefinition.decode(yaml: "name: w\nqueue: q\n\(bad)\nsteps:\n  - { id: a, task: t }\n")
                Issue.record("accepted: \(bad)")
            } catch {
                #expect("\(error)".contains(why), "\(bad): \(error)")
            }
        }
    }
}

extension WorkflowDefinition {
    func with(concurrency: ConcurrencySpec?) -> WorkflowDefinition {
        var copy = self
        copy.concurrency = concurrency
        return copy
    }
}
