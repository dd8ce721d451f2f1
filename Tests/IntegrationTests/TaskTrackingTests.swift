import Foundation
import SluiceClient
import SluiceAPI
import SluiceCore
import SluiceMonitor
import SluiceRabbitMQ
import SluiceTesting
import SluiceWire
import SluiceWorker
import SluiceWorkflow
import Testing

@Suite("Task tracking: the coordinator keeps a tracked task's status")
struct TaskTrackingTests {
    /// The task's record from the API; nil on 404, or while the API is not up yet.
    static func tracked(_ api: String, _ id: String) async throws -> JSONValue? {
        guard let (status, body) = try? await CoordinatorProcess.request("GET", api + "/v1/tasks/\(id)"), status == 200 else {
            return Optional<JSONValue>.none  // (JSONValue takes a bare `nil` as its null)
        }
        return body
    }

    @Test("a tracked task: queued before a worker runs, then retrying, then succeeded with its result, in the API and sluice task status; dead ends dead; untracked tasks are unknown")
    func throughRetries() async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        let q = "tracked"
        try await h.broker.prepare(queues: [q])
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: store)
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        // Up, so the tracking queue exists: a `queued` event before it would be unroutable (and lost).
        try await coordinator.waitUntilHealthy()
        // The coordinator declared it before its API answered (no client has yet):
        // a producer that may not declare it loses no `queued` event from now on.
        let trackingQueue = try await h.broker.queueState(h.topology.trackingQueue)
        #expect(trackingQueue.name == h.topology.trackingQueue)
        let api = coordinator.api
        let client = TaskClient(broker: h.broker, trackedQueues: [q])

        let policy = RetryPolicy(maxAttempts: 3, baseMilliseconds: 1000, factor: 1, capMilliseconds: 1000, jitter: 0)
        let flaky = try await client.enqueue(name: "flaky", json: Array("{}".utf8), options: .init(queue: q, retryPolicy: policy))
        let queued = try await eventually(60, "the coordinator to record \(flaky) as queued") { try await Self.tracked(api, flaky) }
        #expect(queued["status"] == .string("queued") && queued["attempt"] == .number(1) && queued["name"] == .string("flaky"), "\(queued)")
        #expect(queued["enqueuedAt"] != nil && queued["startedAt"] == nil)

        let events = try await h.recordEvents()
        var registry = HandlerRegistry()
        registry.register("flaky") { context in
            if context.attempt < 2 { throw TaskFailure(kind: "flaky", "attempt \(context.attempt) fails") }
            return Array(#"{"ok":true}"#.utf8)
        }
        registry.register("broken") { _ in throw TaskFailure.permanent("never works", kind: "broken") }
        registry.register("echo") { $0.arguments }
        let worker = h.startWorker(queues: [q], registry: registry)
        defer { Task { try? await worker.stop() } }

        // Through the retry; the record reads succeeded at attempt 2, with the first attempt's error kept.
        let done = try await eventually(60, "the coordinator to record \(flaky) as succeeded") { () -> JSONValue? in
            let t = try await Self.tracked(api, flaky)
            return t?["status"] == .string("succeeded") ? t : Optional<JSONValue>.none
        }
        #expect(done["attempt"] == .number(2), "\(done)")
        #expect(done["result"] == ["ok": true], "\(done)")
        #expect(done["errorMessage"] == .string("attempt 1 fails") && done["errorType"] == .string("flaky"), "\(done)")
        #expect(done["startedAt"] != nil && done["finishedAt"] != nil && done["worker"] != nil, "\(done)")
        // The retry was seen on the way (events go to the tracking keys, which monitors' #.kind bindings match too).
        let seen = try await events.waitUntil("the tracked task's retrying event") { $0.contains { $0.taskID == flaky && $0.kind == .retrying } }
        #expect(seen.contains { $0.taskID == flaky && $0.kind == .retrying && $0.tracked == true })

        let common = ["--api", api]
        let text = try await SluiceBinary.run(["task", "status", flaky] + common)
        #expect(text.status == 0, "\(text.output)")
        #expect(text.output.contains("status: succeeded  attempt 2") && text.output.contains(#"result: {"ok":true}"#), "\(text.output)")
        let json = try await SluiceBinary.run(["task", "status", flaky, "--json"] + common)
        #expect(try JSONValue.parse(Array(json.output.utf8))["status"] == .string("succeeded"), "\(json.output)")
        #expect(try await SluiceBinary.run(["task", "status", flaky, "--watch"] + common).status == 0)

        // Ended dead: --watch exits 1, the record says why.
        let broken = try await client.enqueue(name: "broken", json: Array("{}".utf8), options: .init(queue: q))
        // Known to the coordinator first (its `queued` event is applied asynchronously; a loaded CI machine
        // once ran the command before, and it said "no tracked task").
        _ = try await eventually(60, "the coordinator to record \(broken)") { try await Self.tracked(api, broken) }
        let dead = try await SluiceBinary.run(["task", "status", broken, "--watch"] + common)
        #expect(dead.status == 1, "\(dead.output)")
        #expect(dead.output.contains("status: dead") && dead.output.contains("dead: non_retryable"), "\(dead.output)")

        // Untracked (explicitly, on a tracked queue): the coordinator never hears of it.
        let plain = try await client.enqueue(name: "echo", json: Array("{}".utf8), options: .init(queue: q, track: false))
        _ = try await events.waitForOutcomes([plain])
        let (code, _) = try await CoordinatorProcess.request("GET", api + "/v1/tasks/\(plain)")
        #expect(code == 404)
        let unknown = try await SluiceBinary.run(["task", "status", plain] + common)
        #expect(unknown.status == 2 && unknown.output.contains("no tracked task"), "\(unknown.output)")
        // --watch waits a while for a task the coordinator may not have heard of yet, then gives up.
        let watched = try await SluiceBinary.run(["task", "status", plain, "--watch"] + common)
        #expect(watched.status == 2 && watched.output.contains("waiting for the coordinator to hear of")
                && watched.output.contains("no tracked task"), "\(watched.output)")

        // The CLI's --track: tracked from the first command.
        let (status, output) = try await SluiceBinary.run(["enqueue", "echo", "--queue", q, "--track", "--json", "--url", h.url,
                                                           "--prefix", h.topology.prefix])
        #expect(status == 0, "\(output)")
        if case .string(let id)? = try JSONValue.parse(Array(output.utf8))["id"] {
            let t = try await eventually(60, "the CLI's tracked task to succeed") { () -> JSONValue? in
                let t = try await Self.tracked(api, id)
                return t?["status"] == .string("succeeded") ? t : Optional<JSONValue>.none
            }
            #expect(t["queue"] == .string(q))
        } else {
            Issue.record("no id in \(output)")
        }
    }

    @Test("progress: a running task's latest report reaches its tracked record, a workflow step's state and the monitors' event watch")
    func progress() async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        let q = "wf"  // the coordinator's default queue: its steps run here
        try await h.broker.prepare(queues: [q])
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: store)
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        try await coordinator.waitUntilHealthy()
        let api = coordinator.api
        let watch = try await EventWatch(broker: h.broker)

        // Handlers that report, then hold until the test lets them go.
        let gates = OneShotSignal()
        var registry = HandlerRegistry()
        registry.register("halfway") { context in
            // One report: a second one within the second would be dropped, unless a
            // loaded machine stalls between the two (ProgressTests covers the limit).
            context.progress(0.5, message: "halfway there")
            await gates.wait()
            return Array("{}".utf8)
        }
        let worker = h.startWorker(queues: [q], registry: registry)
        defer { Task { try? await worker.stop() } }

        let client = TaskClient(broker: h.broker)
        let tracked = try await client.enqueue(name: "halfway", json: Array("{}".utf8), options: .init(queue: q, track: true))
        let record: JSONValue
        do {
            record = try await eventually(60, "the tracked record to show the progress") { () -> JSONValue? in
                if let exited = SluiceBinary.exited(coordinator.process, "the coordinator") { throw exited }
                let t = try await Self.tracked(api, tracked)
                return t?["progress"] == .number(0.5) ? t : Optional<JSONValue>.none
            }
        } catch {
            // What the coordinator and the worker have instead, and what the coordinator logged.
            let now = try? await Self.tracked(api, tracked)
            Issue.record("""
                \(error); the record: \(now.map { "\($0)" } ?? "none"); the worker: \(worker.worker.stats); \
                the coordinator's log ends:\n\(SluiceBinary.logTail(of: coordinator.process))
                """)
            return
        }
        #expect(record["status"] == .string("running") && record["progressMessage"] == .string("halfway there"), "\(record)")
        let text = try await SluiceBinary.run(["task", "status", tracked, "--api", api])
        #expect(text.output.contains("progress: 50%  halfway there"), "\(text.output)")

        // A workflow step: its state carries the report.
        let definition = "name: reporting\nsteps:\n  - id: long\n    task: halfway\n"
        let typed = CoordinatorClient(base: URL(string: api)!, timeout: TestTime.scaled(30))
        #expect(try await typed.registerWorkflow(yaml: definition).name == "reporting")
        let runID = try await typed.startRun(StartRunRequest(workflow: "reporting")).runID
        let state = try await eventually(60, "the run's step to show the progress") { () -> RunState? in
            let run = try await typed.run(runID)
            return run.steps["long"]?.progress == 0.5 ? run : nil
        }
        let run = try JSONValue.parse(Array(try APICoding.encoder().encode(state)))
        #expect(run["steps"]?["long"]?["progressMessage"] == .string("halfway there"), "\(run)")
        #expect(run["steps"]?["long"]?["status"] == .string("running"))

        // The monitors' watch (sluice top) heard the untracked and the step reports too.
        let plain = try await client.enqueue(name: "halfway", json: Array("{}".utf8), options: .init(queue: q))
        let heard = try await eventually(60, "the event watch to list the running tasks' progress") { () -> [TaskEvent]? in
            let now = watch.inProgress(limit: 10)
            return Set([tracked, plain]).isSubset(of: Set(now.map(\.taskID))) && now.contains { $0.workflowRunID == runID } ? now : nil
        }
        #expect(heard.allSatisfy { $0.progress == 0.5 })

        // Let them finish: they leave the watch's list; the record and the step keep the last report.
        gates.fire()
        _ = try await eventually(60, "the tracked task to succeed") { () -> JSONValue? in
            let t = try await Self.tracked(api, tracked)
            return t?["status"] == .string("succeeded") ? t : Optional<JSONValue>.none
        }
        _ = try await eventually(60, "the watch to drop finished tasks") { () -> Bool? in
            watch.inProgress(limit: 10).contains { $0.taskID == plain || $0.taskID == tracked } ? nil : true
        }
        await watch.stop()
    }
}
