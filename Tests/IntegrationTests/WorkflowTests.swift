import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SluiceCoordinator
import SluiceCore
import SluiceRabbitMQ
import SluiceSpawn
import SluiceTesting
import SluiceWorkflow
import Testing
import SluiceAPI

/// A real `sluice coordinator` process (on a SQLite file of its own, driven
/// through its HTTP API) and a real `sluice worker` process with the built-in
/// tasks, on a prefix of their own.
final class WorkflowHarness {
    let tasks: TaskHarness
    let storePath: String
    let port: Int
    let worker: ChildProcess
    var coordinator: CoordinatorProcess

    init(tasks: TaskHarness, storePath: String, port: Int, worker: ChildProcess, coordinator: CoordinatorProcess) {
        self.tasks = tasks
        self.storePath = storePath
        self.port = port
        self.worker = worker
        self.coordinator = coordinator
    }

    /// Runs `body` with a new harness and always tears it down.
    static func with(port: Int = CoordinatorProcess.freePort(), workerArguments: [String] = [],
                     _ body: (WorkflowHarness) async throws -> Void) async throws {
        let h = try await make(port: port, workerArguments: workerArguments)
        do {
            try await body(h)
        } catch {
            try? await h.finish()
            throw error
        }
        try await h.finish()
    }

    static let queue = "wf"

    static func make(port: Int = CoordinatorProcess.freePort(), workerArguments: [String] = []) async throws -> WorkflowHarness {
        let tasks = try await TaskHarness.make()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-wf-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(tasks, store: "sqlite:" + path, port: port)
        let worker = try SluiceBinary.start(["worker", "--url", tasks.url, "--prefix", tasks.topology.prefix, "--queue", queue,
                                             "--concurrency", "20", "--log-level", "warning", "--retry-base", "250ms"] + workerArguments)
        let h = WorkflowHarness(tasks: tasks, storePath: path, port: port, worker: worker, coordinator: coordinator)
        do {
            try await coordinator.waitUntilHealthy()
        } catch {
            try? await h.finish()
            throw error
        }
        return h
    }

    /// The coordinator's API, with the calls the tests make.
    var engine: APIEngine { APIEngine(api: coordinator.api) }

    /// Runs `body` on the coordinator's SQLite file, opened from this process too
    /// (and always closed: sqlite-nio checks that in debug builds).
    func withStore<T>(_ body: (SQLiteWorkflowStore) async throws -> T) async throws -> T {
        let store = try await SQLiteWorkflowStore.open(path: storePath)
        do {
            let result = try await body(store)
            try await store.close()
            return result
        } catch {
            try? await store.close()
            throw error
        }
    }

    /// Stops the coordinator (SIGTERM) and starts a new process on the same store.
    func restartCoordinator() async throws {
        let process = coordinator.process
        process.terminate()
        #expect(try await within(30, "the coordinator to stop") { try await SluiceBinary.exitStatus(of: process) } == 0)
        coordinator = try CoordinatorProcess.start(tasks, store: "sqlite:" + storePath, port: port)
        try await coordinator.waitUntilHealthy()
    }

    /// Waits until the run is in `status` (fails with its state after `seconds`).
    func wait(for runID: String, _ status: RunState.Status, seconds: Double = 60) async throws -> RunState {
        try await wait(for: runID, "be \(status)", seconds: seconds) { $0.status == status }
    }

    /// Waits until the run's state satisfies `condition` (fails with its
    /// state and both processes' logs after `seconds`).
    func wait(for runID: String, _ what: String, seconds: Double = 60,
              until condition: (RunState) -> Bool) async throws -> RunState {
        let engine = self.engine
        let deadline = TestTime.deadline(seconds)
        var last: RunState?
        while ContinuousClock.now < deadline {
            if let exited = SluiceBinary.exited(coordinator.process, "the coordinator") { throw exited }
            if let exited = SluiceBinary.exited(worker, "the worker") { throw exited }
            last = try await engine.run(runID)
            if let last, condition(last) { return last }
            try await Task.sleep(for: .milliseconds(50))
        }
        let steps = (last?.steps ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.status.rawValue)" }
        throw TimedOut(what: "run \(runID) to \(what) (it is \(last?.status.rawValue ?? "missing"), steps \(steps), error \(last?.error ?? "none"));"
                           + " the coordinator's log ends:\n" + SluiceBinary.logTail(of: coordinator.process)
                           + "\nthe worker's log ends:\n" + SluiceBinary.logTail(of: worker), seconds: TestTime.scaled(seconds))
    }

    func finish() async throws {
        SluiceBinary.stopIfRunning(worker)
        let process = coordinator.process
        if process.isRunning {
            process.terminate()
            _ = try? await within(30, "the coordinator to stop") { try await SluiceBinary.exitStatus(of: process) }
        }
        SluiceBinary.stopIfRunning(coordinator.process)
        await tasks.broker.close()
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: storePath + suffix) }
    }
}

/// The coordinator's HTTP API, shaped like the engine's calls.
struct APIEngine {
    let api: String

    struct Failure: Error, CustomStringConvertible {
        var status: Int
        var body: String
        var description: String { "the coordinator answered \(status): \(body)" }
    }

    private func call(_ method: String, _ path: String, _ body: [UInt8]? = nil) async throws -> (Int, Data) {
        var request = URLRequest(url: URL(string: api + path)!)
        request.httpMethod = method
        if let body {
            request.httpBody = Data(body)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }

    private func expect(_ method: String, _ path: String, _ body: [UInt8]? = nil) async throws -> Data {
        let (status, data) = try await call(method, path, body)
        guard (200..<300).contains(status) else { throw Failure(status: status, body: String(decoding: data, as: UTF8.self)) }
        return data
    }

    static func decodeRun(_ data: Data) throws -> RunState {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            if let date = formatter.date(from: text) ?? ISO8601DateFormatter().date(from: text) { return date }
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a date: \(text)"))
        }
        return try decoder.decode(RunState.self, from: data)
    }

    func register(_ definition: WorkflowDefinition) async throws {
        _ = try await expect("POST", "/v1/workflows", try definition.jsonBytes())
    }

    func start(workflow: String, input: JSONValue) async throws -> RunState {
        try Self.decodeRun(try await expect("POST", "/v1/runs", JSONValue.object(["workflow": .string(workflow), "input": input]).jsonBytes))
    }

    func run(_ id: String) async throws -> RunState? {
        let (status, data) = try await call("GET", "/v1/runs/\(id)")
        if status == 404 { return nil }
        guard status == 200 else { throw Failure(status: status, body: String(decoding: data, as: UTF8.self)) }
        return try Self.decodeRun(data)
    }

    func apply(_ event: WorkflowEvent, to id: String) async throws {
        switch event {
        case .pause: _ = try await expect("POST", "/v1/runs/\(id)/pause")
        case .resume: _ = try await expect("POST", "/v1/runs/\(id)/resume")
        case .cancel(let reason, _): _ = try await expect("POST", "/v1/runs/\(id)/cancel", JSONValue.object(["reason": .string(reason)]).jsonBytes)
        case .retryStep(let step, let rerun, _):
            _ = try await expect("POST", "/v1/runs/\(id)/retry", JSONValue.object(["step": .string(step), "rerun": .bool(rerun)]).jsonBytes)
        default: throw Failure(status: 0, body: "the API has no command for \(event)")
        }
    }
}

@Suite("Workflows end to end: coordinator and worker processes, real broker")
struct WorkflowTests {
    @Test("a 3-step sequence passes each step's output into the next step's arguments and completes")
    func sequence() async throws {
        try await WorkflowHarness.with { h in
            try await h.engine.register(WorkflowDefinition(name: "seq") {
                WorkflowStep.task("a", "sluice.echo", arguments: ["n": "${input.n}"])
                WorkflowStep.task("b", "sluice.echo", after: ["a"], arguments: ["pair": ["${steps.a.output.n}", "${steps.a.output.n}"]])
                WorkflowStep.task("c", "sluice.echo", after: ["b"], arguments: ["text": "got ${steps.b.output.pair}"])
            })
            let run = try await h.engine.start(workflow: "seq", input: ["n": 20])
            let done = try await h.wait(for: run.runID, .completed)
            #expect(done.steps["a"]?.output == ["n": 20])
            #expect(done.steps["b"]?.output == ["pair": [20, 20]])
            #expect(done.output == ["c": ["text": "got [20,20]"]])
        }
    }

    @Test("a map over 100 elements and a join completes with every output collected in order")
    func mapJoin() async throws {
        try await WorkflowHarness.with { h in
            try await h.engine.register(WorkflowDefinition(name: "fan") {
                WorkflowStep.map("each", over: "input.items", task: "sluice.echo", arguments: ["i": "${index}", "v": "${item}"])
                WorkflowStep.join("all", after: ["each"])
            })
            let items = JSONValue.array((0..<100).map { .string("item-\($0)") })
            let run = try await h.engine.start(workflow: "fan", input: ["items": items])
            let done = try await h.wait(for: run.runID, .completed)
            let expected = JSONValue.array((0..<100).map { ["i": .number(Double($0)), "v": .string("item-\($0)")] })
            #expect(done.steps["each"]?.output == expected)
            #expect(done.steps["all"]?.output == [expected])
        }
    }

    @Test("a branch takes each side depending on an earlier output")
    func branch() async throws {
        try await WorkflowHarness.with { h in
            try await h.engine.register(WorkflowDefinition(name: "br") {
                WorkflowStep.task("fetch", "sluice.echo", arguments: ["total": "${input.total}"])
                WorkflowStep.branch("check", after: ["fetch"], if: "steps.fetch.output.total > 100", then: ["review"], else: ["approve"])
                WorkflowStep.task("review", "sluice.echo", arguments: ["side": "review"])
                WorkflowStep.task("approve", "sluice.echo", arguments: ["side": "approve"])
            })
            let big = try await h.engine.start(workflow: "br", input: ["total": 150])
            let small = try await h.engine.start(workflow: "br", input: ["total": 50])
            let bigDone = try await h.wait(for: big.runID, .completed)
            let smallDone = try await h.wait(for: small.runID, .completed)
            #expect(bigDone.steps["review"]?.status == .succeeded)
            #expect(bigDone.steps["approve"]?.status == .skipped)
            #expect(smallDone.steps["approve"]?.output == ["side": "approve"])
            #expect(smallDone.steps["review"]?.status == .skipped)
        }
    }

    @Test("a step failing past its retries fails the run under all-must-succeed, and not under tolerate")
    func failures() async throws {
        try await WorkflowHarness.with { h in
            let make = { (policy: JoinPolicy) in
                WorkflowDefinition(name: "f-\(policy == .all ? "all" : policy == .tolerate ? "tolerate" : "atleast")") {
                    WorkflowStep.task("ok", "sluice.echo", arguments: ["fine": true])
                    WorkflowStep.task("bad", "sluice.fail", arguments: ["times": 99, "message": "always broken"], maxAttempts: 2)
                    WorkflowStep.join("both", after: ["ok", "bad"], policy: policy)
                }
            }
            try await h.engine.register(make(.all))
            try await h.engine.register(make(.tolerate))
            try await h.engine.register(make(.atLeast(1)))
            let strict = try await h.engine.start(workflow: "f-all", input: [:])
            let lenient = try await h.engine.start(workflow: "f-tolerate", input: [:])
            let oneOfTwo = try await h.engine.start(workflow: "f-atleast", input: [:])
            let failed = try await h.wait(for: strict.runID, .failed)
            #expect(failed.failedStep == "both")
            #expect(failed.error?.contains("always broken") == true)
            #expect(failed.steps["bad"]?.error?.contains("max_attempts") == true)
            let finished = try await h.wait(for: lenient.runID, .completed)
            #expect(finished.steps["both"]?.output == [["fine": true], nil])
            // At least 1 of 2: decided by the first success, whatever the other does.
            let decided = try await h.wait(for: oneOfTwo.runID, .completed)
            #expect(decided.steps["both"]?.status == .succeeded)
        }
    }

    @Test("pause stops new steps and resume continues; cancel holds across a coordinator restart")
    func pauseResumeCancel() async throws {
        try await WorkflowHarness.with { h in
            try await h.engine.register(WorkflowDefinition(name: "slow") {
                // Long enough for the pause (an HTTP call on a busy machine) to land while it runs.
                WorkflowStep.task("first", "sluice.sleep", arguments: ["seconds": 3])
                WorkflowStep.task("second", "sluice.echo", after: ["first"], arguments: ["ok": true])
            })
            let run = try await h.engine.start(workflow: "slow", input: [:])
            try await h.engine.apply(.pause(at: Date()), to: run.runID)
            // The running step finishes; the next one waits.
            _ = try await h.wait(for: run.runID, .paused)
            // The worker process may still be starting on a loaded machine: the step's 3 s begin when it has.
            let paused = try await h.wait(for: run.runID, "finish its first step while paused", seconds: 90) {
                $0.steps["first"]?.status != .running
            }
            #expect(paused.status == .paused)
            #expect(paused.steps["first"]?.status == .succeeded)
            #expect(paused.steps["second"]?.status == .ready)
            try await h.engine.apply(.resume(at: Date()), to: run.runID)
            _ = try await h.wait(for: run.runID, .completed)

            let doomed = try await h.engine.start(workflow: "slow", input: [:])
            try await h.engine.apply(.cancel(reason: "not needed", at: Date()), to: doomed.runID)
            try await h.restartCoordinator()
            let cancelled = try await h.wait(for: doomed.runID, .cancelled)
            #expect(cancelled.error == "not needed")
            // The first step's result arrives after the cancel and is ignored; the second never runs.
            // (Events are applied in order: a later run completing means that result was applied.)
            let later = try await h.engine.start(workflow: "slow", input: [:])
            _ = try await h.wait(for: later.runID, .completed)
            #expect(try await h.engine.run(doomed.runID)?.steps["second"]?.status == .skipped)
        }
    }

    @Test("a cron schedule fires when due, not before, and not twice across a coordinator restart")
    func cron() async throws {
        try await WorkflowHarness.with { h in
            try await h.engine.register(WorkflowDefinition(name: "tick") { WorkflowStep.task("a", "sluice.echo", arguments: ["tick": true]) })
            // Yearly, with the first fire moved to a second from now.
            let spec = ScheduleSpec(id: "yearly", cron: "0 0 1 1 *", action: .workflow(name: "tick", version: nil, input: [:]))
            let due = Date().addingTimeInterval(1)
            let encoded = String(decoding: try JSONEncoder().encode(spec), as: UTF8.self)
            try await h.withStore { try await $0.saveSchedule(ScheduleRecord(id: "yearly", spec: encoded, nextFireAt: due)) }
            let runID = "sched-yearly-\(Int64((due.timeIntervalSince1970 * 1000).rounded()))"
            let deadline = TestTime.deadline(30)
            while try await h.engine.run(runID) == nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            let run = try await h.wait(for: runID, .completed)
            // Never early. How late it may be is a matter of load (a busy 2-core CI
            // machine once took 4 s), so lateness is not asserted here: the bounded
            // wait above proves it fires, the run ID that it fires for this due time.
            #expect(run.createdAt.timeIntervalSince(due) >= -0.01, "not before it is due")
            let moved = try await h.withStore { try await $0.schedules().first }
            #expect(moved.map { $0.nextFireAt > Date().addingTimeInterval(86400) } == true, "the next fire is next year")
            // A second claim of the same fire (a restarted or second coordinator) loses.
            let claimed = try await h.withStore { try await $0.fireSchedule(id: "yearly", expected: due, next: due, changes: [], publish: []) }
            #expect(!claimed)
            try await h.restartCoordinator()
            // Nothing should happen, so there is no event to wait for: give the new
            // coordinator's scheduler (it looks every 0.25 s) a second to misbehave.
            try await Task.sleep(for: .seconds(1))
            let runs = try await h.withStore { try await $0.runs(RunQuery(workflow: "tick")) }
            #expect(runs.runs.map(\.runID) == [runID], "one run for one fire")
        }
    }

    @Test("a sub-workflow step runs a child run and takes its output; a delay step waits")
    func subWorkflowAndDelay() async throws {
        try await WorkflowHarness.with { h in
            try await h.engine.register(WorkflowDefinition(name: "child") {
                WorkflowStep.task("double", "sluice.echo", arguments: ["twice": ["${input.n}", "${input.n}"]])
            })
            try await h.engine.register(WorkflowDefinition(name: "parent") {
                WorkflowStep.delay("pause", .milliseconds(300))
                WorkflowStep.workflow("sub", "child", after: ["pause"], input: ["n": "${input.n}"])
            })
            let started = Date()
            let run = try await h.engine.start(workflow: "parent", input: ["n": 7])
            let done = try await h.wait(for: run.runID, .completed)
            #expect(done.steps["sub"]?.output == ["double": ["twice": [7, 7]]])
            #expect(done.finishedAt.map { $0.timeIntervalSince(started) >= 0.3 } == true, "the delay step waited")
            let child = try await h.engine.run("\(run.runID).sub.0")
            #expect(child?.status == .completed)
            #expect(child?.parent?.runID == run.runID)
        }
    }

    @Test("the same event delivered twice changes nothing")
    func duplicateEvent() async throws {
        try await WorkflowHarness.with { h in
            try await h.engine.register(WorkflowDefinition(name: "dup") {
                WorkflowStep.task("a", "sluice.echo", arguments: ["n": 1])
                WorkflowStep.task("b", "sluice.echo", after: ["a"], arguments: ["m": "${steps.a.output.n}"])
            })
            let run = try await h.engine.start(workflow: "dup", input: [:])
            let done = try await h.wait(for: run.runID, .completed)
            // Replay a's succeeded event, as a redelivery would.
            let task = TaskEnvelope(id: "\(run.runID)/a/0", name: "sluice.echo", queue: WorkflowHarness.queue, arguments: [],
                                    workflowRunID: run.runID, workflowStep: "a")
            var event = TaskEvent(kind: .succeeded, task: task)
            event.result = #"{"n":999}"#
            try await h.tasks.broker.publish(h.tasks.topology.eventMessage(event))
            try await h.tasks.broker.publish(h.tasks.topology.eventMessage(event))
            // Events are applied in order: once a later run completes, the duplicates were applied.
            let later = try await h.engine.start(workflow: "dup", input: [:])
            _ = try await h.wait(for: later.runID, .completed)
            let after = try await h.engine.run(run.runID)
            #expect(after == done)
            let unsent = try await h.withStore { try await $0.unsentOutbox(limit: 10) }
            #expect(unsent.isEmpty)
        }
    }
}
