import Foundation
import SluiceWorkflow
import Testing

/// Drives a state machine as the coordinator would, recording its actions.
struct Drive {
    var machine: WorkflowStateMachine
    var now = Date(timeIntervalSince1970: 1_800_000_000)
    /// Every task published, in order.
    var published: [StepTask] = []
    var timers: [String: Date] = [:]
    var children: [String: JSONValue] = [:]
    var cancelledChildren: [String] = []
    var revoked: [String] = []
    var final: WorkflowAction?

    init(_ definition: WorkflowDefinition, input: JSONValue = [:], start: Bool = true) throws {
        machine = try WorkflowStateMachine(definition: definition, runID: "run1", input: input, createdAt: now)
        if start { send(.start(at: now)) }
    }

    var state: RunState { machine.state }
    func step(_ id: String) -> StepState { machine.state.steps[id]! }
    func task(_ stepID: String, index: Int? = nil) -> StepTask? {
        published.last { $0.stepID == stepID && $0.index == index }
    }

    @discardableResult
    mutating func send(_ event: WorkflowEvent) -> [WorkflowAction] {
        let actions = machine.handle(event)
        for action in actions {
            switch action {
            case .publish(let tasks): published += tasks
            case .scheduleTimer(let id, let at): timers[id] = at
            case .cancelTimer(let id): timers[id] = nil
            case .startChild(let key, _, _, let input): children[key] = input
            case .cancelChild(let key): cancelledChildren.append(key)
            case .revokeTasks(let ids): revoked += ids
            case .completed, .failed, .cancelled:
                if case .failed? = final {} else { #expect(final == nil, "a run ends once (unless a failed one is retried)") }
                final = action
            }
        }
        return actions
    }

    mutating func succeed(_ stepID: String, index: Int? = nil, _ output: JSONValue = nil, attempt: Int = 1) {
        guard let t = task(stepID, index: index) else { Issue.record("\(stepID) was not published"); return }
        now += 1
        send(.taskSucceeded(taskID: t.taskID, attempt: attempt, output: output, at: now))
    }

    mutating func dead(_ stepID: String, index: Int? = nil, _ error: String = "boom") {
        guard let t = task(stepID, index: index) else { Issue.record("\(stepID) was not published"); return }
        now += 1
        send(.taskDead(taskID: t.taskID, attempt: 3, reason: "max_attempts", error: error, at: now))
    }

    mutating func fire(_ timerID: String) {
        guard let at = timers[timerID] else { Issue.record("no timer \(timerID)"); return }
        now = max(now, at)
        send(.timerFired(timerID: timerID, at: now))
    }

    var publishedSteps: [String] { published.map(\.stepID) }
}

@Suite("WorkflowStateMachine")
struct StateMachineTests {
    @Test("a 3-step sequence passes each output into the next step's arguments and completes")
    func sequence() throws {
        let d = WorkflowDefinition(name: "seq", defaultQueue: "q") {
            WorkflowStep.task("a", "add", arguments: ["x": "${input.n}"])
            WorkflowStep.task("b", "double", after: ["a"], arguments: ["x": "${steps.a.output.sum}"])
            WorkflowStep.task("c", "show", after: ["b"], arguments: ["text": "result ${steps.b.output}"])
        }
        var r = try Drive(d, input: ["n": 20])
        #expect(r.publishedSteps == ["a"])
        #expect(r.task("a")?.arguments == ["x": 20])
        #expect(r.task("a")?.queue == "q")
        #expect(r.task("a")?.taskID == "run1/a/0")
        r.succeed("a", ["sum": 21])
        #expect(r.task("b")?.arguments == ["x": 21])
        r.succeed("b", 42)
        #expect(r.task("c")?.arguments == ["text": "result 42"])
        #expect(r.state.status == .running)
        r.succeed("c", "done")
        #expect(r.state.status == .completed)
        #expect(r.final == .completed(output: ["c": "done"]))
        #expect(r.published.count == 3)
        #expect(r.step("a").finishedAt != nil && r.step("a").startedAt != nil)
    }

    @Test("independent steps start together; a step waits for all its dependencies")
    func parallel() throws {
        let d = WorkflowDefinition(name: "par") {
            WorkflowStep.task("a", "t")
            WorkflowStep.task("b", "t")
            WorkflowStep.task("c", "t", after: ["a", "b"], arguments: ["both": ["${steps.a.output}", "${steps.b.output}"]])
        }
        var r = try Drive(d)
        #expect(Set(r.publishedSteps) == ["a", "b"])
        r.succeed("b", 2)
        #expect(r.task("c") == nil)
        r.succeed("a", 1)
        #expect(r.task("c")?.arguments == ["both": [1, 2]])
    }

    @Test("a map over 100 elements and a join collects every output in order, whatever order they finish in")
    func mapAndJoin() throws {
        let d = WorkflowDefinition(name: "map") {
            WorkflowStep.map("each", over: "input.items", task: "square", arguments: ["x": "${item}", "i": "${index}"])
            WorkflowStep.join("all", after: ["each"])
        }
        let items = (0..<100).map { JSONValue.number(Double($0)) }
        var r = try Drive(d, input: ["items": .array(items)])
        #expect(r.published.count == 100)
        #expect(r.task("each", index: 7)?.arguments == ["x": 7, "i": 7])
        #expect(r.task("each", index: 7)?.taskID == "run1/each/0/7")
        for i in (0..<100).reversed() {
            r.succeed("each", index: i, .number(Double(i * i)))
        }
        #expect(r.state.status == .completed)
        let squares = JSONValue.array((0..<100).map { .number(Double($0 * $0)) })
        #expect(r.step("each").output == squares)
        #expect(r.step("all").output == [squares])
    }

    @Test("maxParallel keeps at most N elements in flight")
    func maxParallel() throws {
        let d = WorkflowDefinition(name: "mp") {
            WorkflowStep.map("each", over: "input.items", task: "t", maxParallel: 3)
        }
        var r = try Drive(d, input: ["items": [1, 2, 3, 4, 5, 6, 7]])
        #expect(r.published.map(\.index) == [0, 1, 2])
        r.succeed("each", index: 1)
        #expect(r.published.map(\.index) == [0, 1, 2, 3])
        r.succeed("each", index: 0)
        r.succeed("each", index: 2)
        #expect(r.published.map(\.index) == [0, 1, 2, 3, 4, 5])
        for i in 3..<7 {
            if r.task("each", index: i) != nil { r.succeed("each", index: i) }
        }
        r.succeed("each", index: 6)
        #expect(r.published.count == 7)
        #expect(r.state.status == .completed)
    }

    @Test("a map over an empty array succeeds at once; over a non-array it fails with the reason")
    func mapEdges() throws {
        let d = WorkflowDefinition(name: "m") { WorkflowStep.map("each", over: "input.items", task: "t") }
        let empty = try Drive(d, input: ["items": []])
        #expect(empty.state.status == .completed)
        #expect(empty.step("each").output == [])
        let wrong = try Drive(d, input: ["items": "nope"])
        #expect(wrong.state.status == .failed)
        #expect(wrong.state.error?.contains("expected an array, found string") == true)
        #expect(wrong.published.isEmpty)
    }

    @Test("a branch takes each side depending on an earlier output", arguments: [(150, "review"), (50, "approve")])
    func branch(total: Int, taken: String) throws {
        let d = WorkflowDefinition(name: "br") {
            WorkflowStep.task("fetch", "fetch")
            WorkflowStep.branch("check", after: ["fetch"], if: "steps.fetch.output.total > 100", then: ["review"], else: ["approve"])
            WorkflowStep.task("review", "review")
            WorkflowStep.task("approve", "approve")
            WorkflowStep.task("notify", "notify", after: ["review"])
            WorkflowStep.join("done", after: ["notify", "approve"], policy: .atLeast(1))
        }
        var r = try Drive(d)
        r.succeed("fetch", ["total": .number(Double(total))])
        #expect(r.step("check").output == .bool(taken == "review"))
        let other = taken == "review" ? "approve" : "review"
        #expect(r.task(taken) != nil)
        #expect(r.task(other) == nil)
        #expect(r.step(other).status == .skipped)
        if taken == "approve" { #expect(r.step("notify").status == .skipped, "a step after a skipped one is skipped") }
        r.succeed(taken, "ok")
        if taken == "review" { r.succeed("notify", "sent") }
        #expect(r.state.status == .completed)
        #expect(r.step("done").status == .succeeded)
    }

    static let joinCases: [(JoinPolicy, [Bool], RunState.Status)] = [
        (.all, [true, true, true], .completed),
        (.all, [true, false, true], .failed),
        (.tolerate, [true, false, false], .completed),
        (.atLeast(2), [true, false, true], .completed),
        (.atLeast(2), [false, true, false], .failed),
        (.failFast, [true, true, true], .completed),
        (.failFast, [false, true, true], .failed),
    ]

    @Test("join policies decide the run from the outcomes of what they wait for", arguments: joinCases)
    func joins(policy: JoinPolicy, outcomes: [Bool], expected: RunState.Status) throws {
        let d = WorkflowDefinition(name: "j") {
            WorkflowStep.task("a", "t")
            WorkflowStep.task("b", "t")
            WorkflowStep.task("c", "t")
            WorkflowStep.join("j", after: ["a", "b", "c"], policy: policy)
        }
        var r = try Drive(d)
        for (id, ok) in zip(["a", "b", "c"], outcomes) where r.state.status == .running {
            if ok { r.succeed(id, "ok") } else { r.dead(id, "bad \(id)") }
        }
        #expect(r.state.status == expected)
        if expected == .failed {
            #expect(r.state.failedStep == "j")
            #expect(r.state.error?.contains("bad") == true)
        } else {
            #expect(r.step("j").output == .array(outcomes.map { $0 ? "ok" : nil }))
        }
    }

    @Test("fail fast decides at the first failure; at least N decides as soon as it can")
    func earlyDecisions() throws {
        let make = { (policy: JoinPolicy) in
            WorkflowDefinition(name: "e") {
                WorkflowStep.map("each", over: "input.items", task: "t", join: policy)
            }
        }
        var fast = try Drive(make(.failFast), input: ["items": [1, 2, 3]])
        fast.dead("each", index: 1)
        #expect(fast.state.status == .failed)
        #expect(fast.step("each").error?.contains("[1]") == true)
        var two = try Drive(make(.atLeast(2)), input: ["items": [1, 2, 3]])
        two.succeed("each", index: 0, "x")
        #expect(two.state.status == .running)
        two.succeed("each", index: 2, "z")
        #expect(two.state.status == .completed)
        #expect(two.step("each").output == ["x", nil, "z"])
        // The straggler's result changes nothing.
        let before = two.state
        two.succeed("each", index: 1, "y")
        #expect(two.state == before)
    }

    @Test("a step failing past its retries fails the run with its reason; under tolerate the run finishes")
    func stepFailure() throws {
        let strict = WorkflowDefinition(name: "s") {
            WorkflowStep.task("a", "t")
            WorkflowStep.task("b", "t", after: ["a"])
        }
        var r = try Drive(strict)
        r.dead("a", "disk full")
        #expect(r.state.status == .failed)
        #expect(r.state.failedStep == "a")
        #expect(r.state.error == "step 'a' failed: max_attempts: disk full")
        #expect(r.final == .failed(reason: "step 'a' failed: max_attempts: disk full"))
        #expect(r.task("b") == nil)

        let tolerant = WorkflowDefinition(name: "t") {
            WorkflowStep.task("a", "t")
            WorkflowStep.task("b", "t")
            WorkflowStep.join("j", after: ["a", "b"], policy: .tolerate)
            WorkflowStep.task("after", "t", after: ["j"], arguments: ["got": "${steps.j.output}"])
        }
        var t = try Drive(tolerant)
        t.dead("a")
        t.succeed("b", 2)
        #expect(t.task("after")?.arguments == ["got": [nil, 2]])
        t.succeed("after")
        #expect(t.state.status == .completed)
    }

    @Test("the same event twice, and events of unknown or stale tasks, change nothing")
    func duplicatesAndStale() throws {
        let d = WorkflowDefinition(name: "dup") {
            WorkflowStep.task("a", "t")
            WorkflowStep.task("b", "t", after: ["a"])
        }
        var r = try Drive(d)
        let a = r.task("a")!.taskID
        r.send(.taskSucceeded(taskID: a, attempt: 1, output: 1, at: r.now))
        let after = r.state
        let publishedCount = r.published.count
        #expect(r.send(.taskSucceeded(taskID: a, attempt: 1, output: 1, at: r.now)).isEmpty)
        #expect(r.send(.taskDead(taskID: a, attempt: 2, reason: "x", error: nil, at: r.now)).isEmpty)
        #expect(r.send(.taskSucceeded(taskID: "run1/zz/0", attempt: 1, output: 1, at: r.now)).isEmpty)
        #expect(r.send(.taskSucceeded(taskID: "other-run/a/0", attempt: 1, output: 1, at: r.now)).isEmpty)
        #expect(r.send(.taskSucceeded(taskID: "run1/a/7", attempt: 1, output: 1, at: r.now)).isEmpty)
        #expect(r.send(.taskSucceeded(taskID: "run1/a/x/y/z", attempt: 1, output: 1, at: r.now)).isEmpty)
        #expect(r.send(.start(at: r.now)).isEmpty)
        #expect(r.send(.timerFired(timerID: "run1/a/0/~timeout", at: r.now)).isEmpty)
        #expect(r.state == after)
        #expect(r.published.count == publishedCount)
    }

    @Test("applying the same events gives the same state and actions (deterministic)")
    func deterministic() throws {
        let d = WorkflowDefinition(name: "det") {
            WorkflowStep.map("m", over: "input.items", task: "t")
            WorkflowStep.task("x", "t")
            WorkflowStep.join("j", after: ["m", "x"])
        }
        var one = try Drive(d, input: ["items": [1, 2, 3]])
        var two = try Drive(d, input: ["items": [1, 2, 3]])
        #expect(one.published == two.published)
        for r in [0, 1] {
            var drive = r == 0 ? one : two
            drive.succeed("m", index: 2)
            drive.succeed("x")
            drive.succeed("m", index: 0)
            drive.succeed("m", index: 1)
            if r == 0 { one = drive } else { two = drive }
        }
        #expect(one.state == two.state)
        #expect(one.final == two.final)
    }

    @Test("pause stops new steps (running ones finish); resume publishes what became ready")
    func pauseResume() throws {
        let d = WorkflowDefinition(name: "p") {
            WorkflowStep.task("a", "t")
            WorkflowStep.task("b", "t", after: ["a"])
            WorkflowStep.map("m", after: ["a"], over: "input.items", task: "t", maxParallel: 1)
        }
        var r = try Drive(d, input: ["items": [1, 2]])
        r.send(.pause(at: r.now))
        #expect(r.state.status == .paused)
        r.succeed("a", 1)
        #expect(r.step("a").status == .succeeded, "a running step finishes while paused")
        #expect(r.step("b").status == .ready)
        #expect(r.task("b") == nil)
        #expect(r.task("m", index: 0) == nil)
        #expect(r.send(.pause(at: r.now)).isEmpty)
        r.send(.resume(at: r.now))
        #expect(r.state.status == .running)
        #expect(r.task("b") != nil)
        #expect(r.task("m", index: 0) != nil)
        #expect(r.task("m", index: 1) == nil)
        r.send(.pause(at: r.now))
        r.succeed("m", index: 0)
        #expect(r.task("m", index: 1) == nil, "no new element while paused")
        r.send(.resume(at: r.now))
        #expect(r.task("m", index: 1) != nil)
        r.succeed("m", index: 1)
        r.succeed("b")
        #expect(r.state.status == .completed)
    }

    @Test("cancel ends the run for good: later results are ignored, waiting steps are skipped")
    func cancel() throws {
        let d = WorkflowDefinition(name: "c", timeout: .seconds(60)) {
            WorkflowStep.task("a", "t", timeout: .seconds(10))
            WorkflowStep.task("b", "t", after: ["a"])
            WorkflowStep.workflow("child", "sub")
        }
        var r = try Drive(d)
        #expect(r.children.keys.sorted() == ["run1/child/0"])
        r.send(.cancel(reason: "by user", at: r.now))
        #expect(r.state.status == .cancelled)
        #expect(r.final == .cancelled(reason: "by user"))
        #expect(r.cancelledChildren == ["run1/child/0"])
        #expect(r.timers.isEmpty, "timers are cancelled")
        #expect(r.step("b").status == .skipped)
        let after = r.state
        r.succeed("a")
        r.send(.resume(at: r.now))
        r.send(.retryStep(stepID: "a", rerun: true, at: r.now))
        r.send(.timerFired(timerID: r.machine.runTimeoutTimerID, at: r.now))
        #expect(r.state == after)
    }

    @Test("cancel revokes the step tasks still running: a task step's and a map's running elements, not settled ones")
    func cancelRevokes() throws {
        let d = WorkflowDefinition(name: "r") {
            WorkflowStep.task("a", "t")
            WorkflowStep.task("done", "t")
            WorkflowStep.map("each", over: "input.items", task: "t", maxParallel: 2)
            WorkflowStep.task("later", "t", after: ["a"])
        }
        var r = try Drive(d, input: ["items": [1, 2, 3]])
        r.succeed("done")
        r.succeed("each", index: 0)
        #expect(r.revoked.isEmpty)
        r.send(.cancel(reason: "by user", at: r.now))
        #expect(r.revoked.sorted() == ["run1/a/0", "run1/each/0/1", "run1/each/0/2"], "\(r.revoked)")
        r.send(.cancel(reason: "again", at: r.now))
        #expect(r.revoked.count == 3, "a second cancel revokes nothing more")
    }

    @Test("delay steps wait for their timer; step and workflow timeouts fail")
    func timers() throws {
        let d = WorkflowDefinition(name: "t", timeout: .seconds(3600)) {
            WorkflowStep.delay("wait", .seconds(300))
            WorkflowStep.task("a", "t", after: ["wait"], timeout: .seconds(30))
        }
        var r = try Drive(d)
        let start = r.now
        #expect(r.timers["run1/wait/0/~delay"] == start + 300)
        #expect(r.timers[r.machine.runTimeoutTimerID] == start + 3600)
        #expect(r.published.isEmpty)
        r.fire("run1/wait/0/~delay")
        #expect(r.step("wait").status == .succeeded)
        #expect(r.task("a") != nil)
        r.fire("run1/a/0/~timeout")
        #expect(r.state.status == .failed)
        #expect(r.state.error == "step 'a' failed: timed out after 30s")

        var slow = try Drive(d)
        slow.fire(slow.machine.runTimeoutTimerID)
        #expect(slow.state.status == .failed)
        #expect(slow.state.error == "the workflow timed out after 1h")
    }

    @Test("a sub-workflow step starts a child run and takes its output")
    func subWorkflow() throws {
        let d = WorkflowDefinition(name: "parent") {
            WorkflowStep.task("a", "t")
            WorkflowStep.workflow("child", "invoice", version: 2, after: ["a"], input: ["order": "${steps.a.output}"])
        }
        var r = try Drive(d)
        r.succeed("a", "o-1")
        #expect(r.children["run1/child/0"] == ["order": "o-1"])
        r.send(.childFinished(childKey: "run1/child/0", succeeded: true, output: ["paid": true], error: nil, at: r.now))
        #expect(r.state.status == .completed)
        #expect(r.state.output == ["child": ["paid": true]])

        var failing = try Drive(d)
        failing.succeed("a", "o-2")
        failing.send(.childFinished(childKey: "run1/child/0", succeeded: false, output: nil, error: "card declined", at: failing.now))
        #expect(failing.state.status == .failed)
        #expect(failing.state.error?.contains("card declined") == true)
    }

    @Test("retrying a failed step runs it again under a new task id; the old attempt's events are stale")
    func retryStep() throws {
        let d = WorkflowDefinition(name: "r") {
            WorkflowStep.task("a", "t")
            WorkflowStep.task("b", "t", after: ["a"])
            WorkflowStep.task("c", "t", after: ["b"])
        }
        var r = try Drive(d)
        r.succeed("a", 1)
        let oldB = r.task("b")!.taskID
        r.dead("b")
        #expect(r.state.status == .failed)
        r.send(.retryStep(stepID: "b", rerun: false, at: r.now))
        #expect(r.state.status == .running)
        let newB = r.task("b")!.taskID
        #expect(newB == "run1/b/1")
        #expect(newB != oldB)
        #expect(r.send(.taskSucceeded(taskID: oldB, attempt: 1, output: 9, at: r.now)).isEmpty, "stale")
        r.succeed("b", 2)
        r.succeed("c", 3)
        #expect(r.state.status == .completed)
        #expect(r.step("a").generation == 0, "a succeeded and was not rerun")

        // Rerun from a step: it and everything after it run again.
        var again = try Drive(d)
        again.succeed("a", 1)
        again.dead("b")
        again.send(.retryStep(stepID: "a", rerun: true, at: again.now))
        #expect(again.task("a")?.taskID == "run1/a/1")
        #expect(again.step("b").status == .waiting)
        again.succeed("a", 10)
        #expect(again.task("b")?.taskID == "run1/b/1")
        // Retrying a step that did not fail is refused.
        let before = again.state
        again.send(.retryStep(stepID: "a", rerun: false, at: again.now))
        #expect(again.state == before)
    }

    @Test("a retry does not run a step on the side of a branch that was not taken")
    func retryKeepsBranchDecision() throws {
        let d = WorkflowDefinition(name: "rb") {
            WorkflowStep.branch("b", if: "input.go", then: ["yes"], else: ["no"])
            WorkflowStep.task("yes", "t")
            WorkflowStep.task("e", "t")
            WorkflowStep.task("no", "t", after: ["e"])
        }
        var r = try Drive(d, input: ["go": true])
        #expect(r.step("no").status == .skipped)
        r.dead("e")
        #expect(r.state.status == .failed)
        r.send(.retryStep(stepID: "e", rerun: false, at: r.now))
        r.succeed("e")
        r.succeed("yes")
        #expect(r.task("no") == nil, "the branch excluded it")
        #expect(r.step("no").status == .skipped)
        #expect(r.state.status == .completed)
    }

    @Test("retrying a map step runs only its failed elements again")
    func retryMap() throws {
        let d = WorkflowDefinition(name: "rm") { WorkflowStep.map("m", over: "input.items", task: "t") }
        var r = try Drive(d, input: ["items": [1, 2, 3]])
        r.succeed("m", index: 0, "a")
        r.dead("m", index: 1)
        r.succeed("m", index: 2, "c")
        #expect(r.state.status == .failed)
        let count = r.published.count
        r.send(.retryStep(stepID: "m", rerun: false, at: r.now))
        #expect(r.published.count == count + 1)
        #expect(r.published.last?.taskID == "run1/m/1/1")
        r.succeed("m", index: 1, "b")
        #expect(r.state.status == .completed)
        #expect(r.step("m").output == ["a", "b", "c"])
    }

    @Test("results of steps still running when the run failed are kept for a retry")
    func resultsAfterFailure() throws {
        let d = WorkflowDefinition(name: "k") {
            WorkflowStep.task("a", "t")
            WorkflowStep.task("b", "t")
            WorkflowStep.task("c", "t", after: ["a", "b"])
        }
        var r = try Drive(d)
        r.dead("a")
        #expect(r.state.status == .failed)
        r.succeed("b", 2)
        #expect(r.step("b").status == .succeeded)
        #expect(r.task("c") == nil)
        r.send(.retryStep(stepID: "a", rerun: false, at: r.now))
        r.succeed("a", 1)
        #expect(r.task("c") != nil)
    }

    @Test("a join targeted by a branch decides on its own steps, and is skipped with the side not taken")
    func joinAsBranchTarget() throws {
        let d = WorkflowDefinition(name: "jb") {
            WorkflowStep.task("a", "t")
            WorkflowStep.task("b", "t")
            WorkflowStep.branch("check", if: "input.go", then: ["both"], else: ["other"])
            WorkflowStep.join("both", after: ["a", "b"], policy: .all)
            WorkflowStep.task("other", "t")
        }
        var taken = try Drive(d, input: ["go": true])
        taken.succeed("a", 1)
        #expect(taken.step("both").status == .waiting, "the branch alone does not settle the join")
        taken.succeed("b", 2)
        #expect(taken.step("both").output == [1, 2])
        #expect(taken.state.status == .completed)
        var not = try Drive(d, input: ["go": false])
        #expect(not.step("both").status == .skipped)
        not.succeed("a")
        not.succeed("b")
        not.succeed("other")
        #expect(not.state.status == .completed)
    }

    @Test("steps started in the event that fails the run are still published, and their results kept")
    func startedBeforeFailure() throws {
        let d = WorkflowDefinition(name: "sf") {
            WorkflowStep.task("a", "t")
            WorkflowStep.task("b", "t", after: ["a"])
            WorkflowStep.task("c", "t", after: ["a"], arguments: ["x": "${steps.a.output.missing}"])
        }
        var r = try Drive(d)
        r.succeed("a", ["other": 1])
        #expect(r.state.status == .failed)
        #expect(r.task("b") != nil, "b was started before c failed")
        r.succeed("b", 2)
        #expect(r.step("b").status == .succeeded)
    }

    @Test("a retry that reopens a run fails it again if another step failed meanwhile")
    func retryWithOtherFailure() throws {
        let d = WorkflowDefinition(name: "rf") {
            WorkflowStep.task("a", "t")
            WorkflowStep.task("b", "t")
        }
        var r = try Drive(d)
        r.dead("a", "first")
        r.dead("b", "second")
        #expect(r.state.failedStep == "a")
        r.send(.retryStep(stepID: "a", rerun: false, at: r.now))
        #expect(r.state.status == .failed)
        #expect(r.state.failedStep == "b")
        r.send(.retryStep(stepID: "b", rerun: false, at: r.now))
        #expect(r.state.status == .running)
        r.succeed("a")
        r.succeed("b")
        #expect(r.state.status == .completed)
    }

    @Test("an arguments template that refers to nothing fails its step with the reason")
    func templateFailure() throws {
        let d = WorkflowDefinition(name: "tf") {
            WorkflowStep.task("a", "t")
            WorkflowStep.task("b", "t", after: ["a"], arguments: ["x": "${steps.a.output.missing}"])
        }
        var r = try Drive(d)
        r.succeed("a", ["other": 1])
        #expect(r.state.status == .failed)
        #expect(r.state.error?.contains("refers to nothing") == true)
        #expect(r.task("b") == nil)
    }

    @Test("worker retries are recorded as attempts")
    func attempts() throws {
        let d = WorkflowDefinition(name: "at") { WorkflowStep.task("a", "t") }
        var r = try Drive(d)
        let id = r.task("a")!.taskID
        r.send(.taskRetrying(taskID: id, attempt: 1, error: "x", at: r.now))
        r.send(.taskRetrying(taskID: id, attempt: 2, error: "x", at: r.now))
        #expect(r.step("a").attempts == 2)
        r.succeed("a", attempt: 3)
        #expect(r.step("a").attempts == 3)
    }

    @Test("a task step's progress reports are kept on its state while it runs; maps, older generations and settled steps ignore them")
    func progress() throws {
        let d = WorkflowDefinition(name: "pr") {
            WorkflowStep.task("a", "t")
            WorkflowStep.map("m", over: "input.items", task: "t")
        }
        var r = try Drive(d, input: ["items": [1]])
        let id = r.task("a")!.taskID
        r.send(.taskProgress(taskID: id, attempt: 1, fraction: 0.4, message: "reading", at: r.now))
        #expect(r.step("a").progress == 0.4 && r.step("a").progressMessage == "reading")
        // A map element's report: the map shows counts, not progress.
        r.send(.taskProgress(taskID: r.task("m", index: 0)!.taskID, attempt: 1, fraction: 0.5, message: nil, at: r.now))
        #expect(r.step("m").progress == nil)
        // Attempt 1 fails (the worker's retrying names it): its report is cleared, and a late one ignored.
        r.send(.taskRetrying(taskID: id, attempt: 1, error: "x", at: r.now))
        #expect(r.step("a").progress == nil)
        r.send(.taskProgress(taskID: id, attempt: 1, fraction: 0.9, message: "late", at: r.now))
        #expect(r.step("a").progress == nil)
        r.send(.taskProgress(taskID: id, attempt: 2, fraction: 0.7, message: "again", at: r.now))
        #expect(r.step("a").progress == 0.7)
        var machine = r.machine
        let changedAgain = machine.applyProgress(taskID: id, attempt: 2, fraction: 0.7, message: "again")
        #expect(!changedAgain, "the same report again changes nothing")
        r.succeed("a", attempt: 2)
        r.send(.taskProgress(taskID: id, attempt: 3, fraction: 0.1, message: "after", at: r.now))
        #expect(r.step("a").progress == 0.7 && r.step("a").status == .succeeded, "a settled step keeps its last report")
        // Kept in the stored JSON.
        let restored = try JSONDecoder().decode(RunState.self, from: Data(r.state.storedJSON()))
        #expect(restored.steps["a"]?.progress == 0.7 && restored.steps["a"]?.progressMessage == "again")
    }

    @Test("a run's state survives encoding (what the store keeps) and continues the same")
    func restore() throws {
        let d = WorkflowDefinition(name: "rs") {
            WorkflowStep.map("m", over: "input.items", task: "t")
            WorkflowStep.task("b", "t", after: ["m"])
        }
        var r = try Drive(d, input: ["items": [1, 2]])
        r.succeed("m", index: 0, "x")
        let data = try JSONEncoder().encode(r.state)
        let restored = try JSONDecoder().decode(RunState.self, from: data)
        #expect(restored == r.state)
        var machine = try WorkflowStateMachine(definition: d, state: restored)
        let second = r.task("m", index: 1)!.taskID
        let actions = machine.handle(.taskSucceeded(taskID: second, attempt: 1, output: "y", at: r.now))
        guard case .publish(let tasks)? = actions.first else { Issue.record("expected b to be published"); return }
        #expect(tasks.map(\.stepID) == ["b"])
    }
}
