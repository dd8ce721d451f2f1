import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SluiceAPI
import SluiceCoordinator
import SluiceCore
import SluiceRabbitMQ
import SluiceSpawn
import SluiceTesting
import SluiceWorkflow
import Synchronization
import Testing

/// `sluice coordinator` as a real process, with its HTTP API, against real workers.
struct CoordinatorProcess {
    let process: ChildProcess
    let port: Int
    var api: String { "http://127.0.0.1:\(port)" }
    /// The typed client of its API (what the CLI uses).
    var client: CoordinatorClient { CoordinatorClient(base: URL(string: api)!, timeout: TestTime.scaled(30)) }

    /// A port for a server a test starts: below Linux's ephemeral range
    /// (32768 up, where outgoing connections take their local ports) and the
    /// private nodes' ports (27170 up), never handed out twice in one run, and
    /// free to bind now.
    /// A port nobody listens on, from 20000-23999: below the test clusters'
    /// ports (24000-26990, `PrivateCluster.unique`). `alsoFree`: a second
    /// port at that offset must be free too (a process listening on both).
    static func freePort(alsoFree offset: Int? = nil) -> Int {
        while true {
            let port = Int.random(in: 20_000...(23_999 - (offset ?? 0)))
            let fresh = handedOut.withLock { s in
                s.insert(port).inserted && (offset.map { s.insert(port + $0).inserted } ?? true)
            }
            if fresh && canBind(port) && (offset.map { canBind(port + $0) } ?? true) { return port }
        }
    }

    private static let handedOut = Mutex<Set<Int>>([])

    private static func canBind(_ port: Int) -> Bool {
        guard let fd = LoopbackSocket.bound(to: port) else { return false }
        close(fd)
        return true
    }

    static func start(_ h: TaskHarness, store: String, port: Int = freePort(), extra: [String] = [],
                      environment: [String: String] = [:]) throws -> CoordinatorProcess {
        let process = try SluiceBinary.start(["coordinator", "--url", h.url, "--prefix", h.topology.prefix,
                                              "--delivery-limit", "\(h.topology.deliveryLimit)", "--store", store,
                                              "--http", "127.0.0.1:\(port)", "--default-queue", "wf", "--lease-ttl", "6s",
                                              "--log-level", "warning"]
                                              // Many coordinators share the test broker: no queue sampling unless asked for.
                                              + (extra.contains("--queue-metrics-interval") ? [] : ["--queue-metrics-interval", "off"])
                                              + extra, environment: environment)
        return CoordinatorProcess(process: process, port: port)
    }

    /// Sends a request to the API; returns the status and JSON body.
    static func request(_ method: String, _ url: String, body: [UInt8]? = nil, contentType: String = "application/json",
                        token: String? = nil) async throws -> (status: Int, body: JSONValue) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        // URLSession's 60 s, scaled like every other bound: a loaded CI machine once took longer.
        request.timeoutInterval = TestTime.scaled(60)
        if let body {
            request.httpBody = Data(body)
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        }
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, (try? JSONValue.parse(Array(data))) ?? .null)
    }

    /// Waits until the API answers /healthz with `active` as asked.
    func waitUntilHealthy(active: Bool = true, seconds: Double = 60) async throws {
        let deadline = TestTime.deadline(seconds)
        while ContinuousClock.now < deadline {
            if let health = try? await client.health(), health.active == (active ? "true" : "false") { return }
            if let exited = SluiceBinary.exited(process, "the coordinator at \(api)") { throw exited }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TimedOut(what: "the coordinator at \(api) to be \(active ? "active" : "standing by") (its log ends:\n"
                           + SluiceBinary.logTail(of: process) + ")", seconds: TestTime.scaled(seconds))
    }

    /// A run as the API writes it (read with the typed client, written back
    /// with the API's encoder, so tests can look into it by path); nil if there is none.
    func run(_ id: String) async throws -> JSONValue? {
        do {
            return try JSONValue.parse(Array(try APICoding.encoder().encode(try await client.run(id))))
        } catch let failure as CoordinatorClient.Failure where failure.kind == .refused(status: 404, code: "not_found") {
            return nil
        }
    }

    /// Registers ``CoordinatorProcessTests/pipeline`` and starts `count` runs
    /// of it; run `i` maps over the `width` items `i`, `i+1`, ...
    func startPipelineRuns(_ count: Int, width: Int) async throws -> [String] {
        #expect(try await client.registerWorkflow(yaml: CoordinatorProcessTests.pipeline).name == "pipeline")
        var ids: [String] = []
        for i in 0..<count {
            let input = JSONValue.object(["items": .array((0..<width).map { .number(Double($0 + i)) })])
            ids.append(try await client.startRun(StartRunRequest(workflow: "pipeline", input: input)).runID)
        }
        #expect(ids.count == count)
        return ids
    }

    /// Waits until a run reaches `status`.
    func wait(for id: String, _ status: String, seconds: Double = 90) async throws -> JSONValue {
        let deadline = TestTime.deadline(seconds)
        var last: JSONValue?
        while ContinuousClock.now < deadline {
            if let run = try? await run(id) {
                last = run
                if run["status"] == .string(status) { return run }
            }
            if let exited = SluiceBinary.exited(process, "the coordinator at \(api)") { throw exited }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TimedOut(what: "run \(id) to be \(status) (last: \(last?["status"]?.jsonText ?? "none"); the coordinator's log ends:\n"
                           + SluiceBinary.logTail(of: process) + ")", seconds: TestTime.scaled(seconds))
    }
}

func writeTemp(_ text: String, _ ext: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).\(ext)").path
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

@Suite("The coordinator process: CLI, HTTP API, restarts, standby", .serialized)
struct CoordinatorProcessTests {
    static let pipeline = """
        name: pipeline
        steps:
          - id: fetch
            task: sluice.echo
            arguments: { items: "${input.items}" }
          - id: each
            after: [fetch]
            map: { over: steps.fetch.output.items, task: sluice.echo, arguments: { v: "${item}" } }
          - id: total
            after: [each]
            task: sluice.echo
            arguments: { all: "${steps.each.output}" }
        """

    /// A `sluice worker` on the workflows' queue `wf`.
    static func workerArguments(_ h: TaskHarness) -> [String] {
        ["worker", "--url", h.url, "--prefix", h.topology.prefix, "--delivery-limit", "\(h.topology.deliveryLimit)", "--queue", "wf",
         "--concurrency", "20", "--log-level", "warning"]
    }

    @Test("sluice workflow register/start/status run a workflow through the coordinator process")
    func cli() async throws {
        let h = try await TaskHarness.make()
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: store)
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        let worker = try SluiceBinary.start(Self.workerArguments(h))
        defer { SluiceBinary.stopIfRunning(worker) }
        try await coordinator.waitUntilHealthy()
        let file = try writeTemp(Self.pipeline, "yaml")
        let register = try await SluiceBinary.run(["workflow", "register", file, "--api", coordinator.api])
        #expect(register.status == 0, "\(register.output)")
        #expect(register.output.contains("registered pipeline version 1"))
        let start = try await SluiceBinary.run(["workflow", "start", "pipeline", "--input", #"{"items": [1, 2, 3]}"#, "--key", "k1",
                                                "--api", coordinator.api])
        #expect(start.status == 0, "\(start.output)")
        let runID = start.output.trimmingCharacters(in: .whitespacesAndNewlines)
        let again = try await SluiceBinary.run(["workflow", "start", "pipeline", "--input", "{}", "--key", "k1", "--api", coordinator.api])
        #expect(again.output.trimmingCharacters(in: .whitespacesAndNewlines) == runID, "the same key returns the same run")
        let done = try await coordinator.wait(for: runID, "completed")
        #expect(done["steps"]?["total"]?["output"] == ["all": [["v": 1], ["v": 2], ["v": 3]]])
        let status = try await SluiceBinary.run(["workflow", "status", runID, "--api", coordinator.api])
        #expect(status.output.contains("completed"))
        #expect(status.output.contains("3/3 elements"))
        let list = try await SluiceBinary.run(["workflow", "list", "--state", "completed", "--json", "--api", coordinator.api])
        #expect(list.output.contains(runID))
        // A standalone task through the API, for services that do not speak AMQP.
        let events = try await h.recordEvents()
        let enqueued = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/tasks",
                                                            body: Array(#"{"name": "sluice.echo", "queue": "wf", "arguments": {"hi": 1}}"#.utf8))
        #expect(enqueued.status == 201)
        if case .string(let taskID)? = enqueued.body["id"] {
            let outcome = try await events.waitForOutcomes([taskID])
            #expect(outcome[taskID]?.kind == .succeeded)
            #expect(outcome[taskID]?.result == #"{"hi":1}"#)
        } else {
            Issue.record("no task id in \(enqueued.body.jsonText)")
        }
        let metrics = try await URLSession.shared.data(from: URL(string: coordinator.api + "/metrics")!)
        let text = String(decoding: metrics.0, as: UTF8.self)
        #expect(text.contains("sluice_workflow_runs{status=\"completed\"} 1"))
        let stats = try await CoordinatorProcess.request("GET", coordinator.api + "/v1/stats")
        #expect(stats.status == 200)
        #expect(stats.body["runs"]?["completed"] == .number(1) && stats.body["runs"]?["running"] == .number(0), "\(stats.body)")
        let bad = try await SluiceBinary.run(["workflow", "register", try writeTemp("name: x\nsteps: [{id: a}]", "yaml"), "--api", coordinator.api])
        #expect(bad.status != 0)
        #expect(bad.output.contains("exactly one of task"))
        coordinator.process.terminate()
        #expect(try await within(30, "the coordinator to stop") { try await SluiceBinary.exitStatus(of: coordinator.process) } == 0)
        await h.broker.close()
    }

    @Test("the HTTP API rejects malformed and oversized bodies with JSON errors, and needs a token off loopback")
    func apiErrors() async throws {
        let h = try await TaskHarness.make()
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: store)
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        try await coordinator.waitUntilHealthy()
        let api = coordinator.api
        let malformed = try await CoordinatorProcess.request("POST", api + "/v1/runs", body: Array("{not json".utf8))
        #expect(malformed.status == 400)
        #expect(malformed.body["error"]?["code"] == "bad_request")
        let missing = try await CoordinatorProcess.request("POST", api + "/v1/runs", body: Array(#"{"input": {}}"#.utf8))
        #expect(missing.status == 400)
        let unknown = try await CoordinatorProcess.request("POST", api + "/v1/runs", body: Array(#"{"workflow": "nope"}"#.utf8))
        #expect(unknown.status == 404)
        #expect(unknown.body["error"]?["code"] == "unknown_workflow")
        let big = [UInt8](repeating: UInt8(ascii: " "), count: 2 << 20)
        let tooLarge = try await CoordinatorProcess.request("POST", api + "/v1/workflows", body: big)
        #expect(tooLarge.status == 413)
        #expect(tooLarge.body["error"]?["code"] == "too_large")
        let invalid = try await CoordinatorProcess.request("POST", api + "/v1/workflows", body: Array(#"{"name": "w", "steps": []}"#.utf8))
        #expect(invalid.status == 400)
        #expect(invalid.body["error"]?["code"] == "invalid_definition")
        let noRoute = try await CoordinatorProcess.request("GET", api + "/v1/nothing")
        #expect(noRoute.status == 404)
        #expect(noRoute.body["error"]?["code"] == "not_found")
        let noRun = try await CoordinatorProcess.request("GET", api + "/v1/runs/missing")
        #expect(noRun.status == 404)
        for bad in ["1e300", "nan", "inf", "yesterday"] {
            let badTime = try await CoordinatorProcess.request("GET", api + "/v1/runs?after=\(bad)")
            #expect(badTime.status == 400, "after=\(bad)")
        }
        let deep = Array(#"{"name": "w", "steps": [{"id": "b", "branch": {"if": "\#(String(repeating: "!", count: 200_000))true", "then": ["c"]}}, {"id": "c", "task": "t"}]}"#.utf8)
        let deepResult = try await CoordinatorProcess.request("POST", api + "/v1/workflows", body: deep)
        #expect(deepResult.status == 400, "a deeply nested condition is refused")
        #expect(coordinator.process.isRunning, "and the coordinator is still up")
        coordinator.process.terminate()
        _ = try await SluiceBinary.exitStatus(of: coordinator.process)

        // Off loopback: refused without a token; with one, requests need it.
        let open = try await SluiceBinary.run(["coordinator", "--url", h.url, "--prefix", h.topology.prefix, "--store", store,
                                               "--http", "0.0.0.0:\(CoordinatorProcess.freePort())"])
        #expect(open.status != 0)
        #expect(open.output.contains("needs a token"))
        let port = CoordinatorProcess.freePort()
        let guarded = try SluiceBinary.start(["coordinator", "--url", h.url, "--prefix", h.topology.prefix, "--store", store,
                                              "--http", "0.0.0.0:\(port)", "--http-token", "s3cret", "--log-level", "warning"])
        defer { SluiceBinary.stopIfRunning(guarded) }
        let guardedAPI = "http://127.0.0.1:\(port)"
        try await CoordinatorProcess(process: guarded, port: port).waitUntilHealthy()
        let refused = try await CoordinatorProcess.request("GET", guardedAPI + "/v1/runs")
        #expect(refused.status == 401)
        #expect(refused.body["error"]?["code"] == "unauthorized")
        let wrong = try await CoordinatorProcess.request("GET", guardedAPI + "/v1/runs", token: "guess")
        #expect(wrong.status == 401)
        let allowed = try await CoordinatorProcess.request("GET", guardedAPI + "/v1/runs", token: "s3cret")
        #expect(allowed.status == 200)
        guarded.terminate()
        _ = try await SluiceBinary.exitStatus(of: guarded)
        await h.broker.close()
    }

    @Test("a step whose task kills its worker every time fails the run with reason delivery_limit")
    func stepAtDeliveryLimit() async throws {
        let h = try await TaskHarness.make(deliveryLimit: 2)
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: store)
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        try await coordinator.waitUntilHealthy()
        let definition = #"{"name": "crashy", "steps": [{"id": "boom", "task": "sluice.crash"}]}"#
        #expect(try await coordinator.client.registerWorkflow(yaml: definition).name == "crashy")
        let runID = try await coordinator.client.startRun(StartRunRequest(workflow: "crashy")).runID
        // Each worker dies on the task; after the limit RabbitMQ dead-letters it, and no worker reports it.
        for attempt in 1...3 {
            let (status, output) = try await within(60, "worker run \(attempt)") { try await SluiceBinary.run(Self.workerArguments(h)) }
            #expect(status == 70, "run \(attempt): the worker should die on sluice.crash: \(output)")
        }
        let failed = try await coordinator.wait(for: runID, "failed")
        #expect(failed["failedStep"] == "boom")
        #expect(failed["error"].map { $0.jsonText.contains("delivery_limit") } == true, "\(failed["error"]?.jsonText ?? "")")
        coordinator.process.terminate()
        _ = try await SluiceBinary.exitStatus(of: coordinator.process)
        await h.broker.close()
    }

    @Test("the coordinator killed with SIGKILL again and again while 50 runs are in progress: after restarts every run completes")
    func killRepeatedly() async throws {
        let h = try await TaskHarness.make()
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let port = CoordinatorProcess.freePort()
        var coordinator = try CoordinatorProcess.start(h, store: store, port: port)
        let worker = try SluiceBinary.start(Self.workerArguments(h))
        defer { SluiceBinary.stopIfRunning(worker) }
        try await coordinator.waitUntilHealthy()
        let ids = try await coordinator.startPipelineRuns(50, width: 5)
        for _ in 0..<4 {
            try await Task.sleep(for: .milliseconds(Int.random(in: 200...600)))
            kill(coordinator.process.processIdentifier, SIGKILL)
            _ = try await SluiceBinary.exitStatus(of: coordinator.process)
            coordinator = try CoordinatorProcess.start(h, store: store, port: port)
            try await coordinator.waitUntilHealthy()
        }
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        for (i, id) in ids.enumerated() {
            let run = try await coordinator.wait(for: id, "completed")
            let expected = JSONValue.array((0..<5).map { ["v": .number(Double($0 + i))] })
            #expect(run["steps"]?["total"]?["output"] == ["all": expected], "run \(i)")
            // Each step succeeded once, in its first generation.
            for step in ["fetch", "each", "total"] {
                #expect(run["steps"]?[step]?["generation"] == 0)
                #expect(run["steps"]?[step]?["status"] == "succeeded")
            }
        }
        coordinator.process.terminate()
        _ = try await SluiceBinary.exitStatus(of: coordinator.process)
        await h.broker.close()
    }

    @Test("a coordinator stalled past its lease carries on; one whose lease is taken over stands by, and leads again once it is free")
    func stepsDownAndRejoins() async throws {
        let h = try await TaskHarness.make()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: "sqlite:" + path)
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        let worker = try SluiceBinary.start(Self.workerArguments(h))
        defer { SluiceBinary.stopIfRunning(worker) }
        try await coordinator.waitUntilHealthy(active: true)
        for yaml in [Self.pipeline, "name: slow\nsteps:\n  - id: wait\n    delay: 1h\n"] {
            let register = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/workflows", body: Array(yaml.utf8),
                                                                contentType: "application/yaml")
            #expect(register.status == 201, "\(register.body)")
        }
        // A run that stays running, so the coordinator keeps it in its cache.
        let slow = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/runs", body: Array(#"{"workflow": "slow"}"#.utf8))
        guard case .string(let slowID)? = slow.body["runID"] else { Issue.record("no run: \(slow)"); return }
        let before = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/runs",
                                                          body: Array(#"{"workflow": "pipeline", "input": {"items": [1]}}"#.utf8))
        guard case .string(let first)? = before.body["runID"] else { Issue.record("no run: \(before)"); return }
        _ = try await coordinator.wait(for: first, "completed")

        // A stall past the lease (6 s here) with no standby around: it carries on.
        kill(coordinator.process.processIdentifier, SIGSTOP)
        try await Task.sleep(for: .seconds(8))  // the stall itself, not a wait for something
        kill(coordinator.process.processIdentifier, SIGCONT)
        let resumed = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/runs",
                                                           body: Array(#"{"workflow": "pipeline", "input": {"items": [5]}}"#.utf8))
        guard case .string(let afterStall)? = resumed.body["runID"] else { Issue.record("no run after the stall: \(resumed)"); return }
        _ = try await coordinator.wait(for: afterStall, "completed")
        try await coordinator.waitUntilHealthy(active: true)

        // Another holder takes the lease, as a standby would after this one stalled
        // (its clock an hour ahead makes the lease look expired).
        let lease = "coordinator:\(h.topology.prefix)"
        let store = try await SQLiteWorkflowStore.open(path: path)
        do {
            #expect(try await store.acquireLease(lease, holder: "intruder", now: Date() + 3600, ttl: .seconds(3600)))
            try await coordinator.waitUntilHealthy(active: false, seconds: 30)
            #expect(coordinator.process.isRunning, "it stands by instead of exiting")
            let refused = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/runs",
                                                               body: Array(#"{"workflow": "pipeline", "input": {"items": [2]}}"#.utf8))
            #expect(refused.status == 503, "a standby refuses commands")
            // Meanwhile the other coordinator cancels the slow run (the test writes it, unfenced).
            guard var changed = try await store.run(id: slowID) else { Issue.record("no run \(slowID) in the store"); return }
            #expect(changed.status == .running)
            changed.status = .cancelled
            try await store.commit([RunChange(run: changed)])
            #expect(try await coordinator.run(slowID)?["status"] == .string("cancelled"), "a standby reads runs from the store")
            // The lease is free again: it leads again, with new consumers (the
            // event queue has a single active consumer: were the old one still
            // there, it would take the events and the next run would stall).
            try await store.releaseLease(lease, holder: "intruder")
            try await coordinator.waitUntilHealthy(active: true, seconds: 30)
            try await store.close()
        } catch {
            try? await store.close()
            throw error
        }
        // Leading again, it does not act on what it knew before: pausing the
        // run finds it cancelled and changes nothing.
        let paused = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/runs/\(slowID)/pause")
        #expect(paused.body["status"] == .string("cancelled"), "\(paused)")
        #expect(try await coordinator.run(slowID)?["status"] == .string("cancelled"))
        let after = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/runs",
                                                         body: Array(#"{"workflow": "pipeline", "input": {"items": [3, 4]}}"#.utf8))
        guard case .string(let second)? = after.body["runID"] else { Issue.record("no run: \(after)"); return }
        let done = try await coordinator.wait(for: second, "completed", seconds: 60)
        #expect(done["steps"]?["total"]?["output"] == ["all": [["v": 3], ["v": 4]]])
        coordinator.process.terminate()
        #expect(try await SluiceBinary.exitStatus(of: coordinator.process) == 0)
        await h.broker.close()
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
    }

    @Test("--retention: a finished run is deleted once it is older; a run still going stays")
    func retention() async throws {
        let h = try await TaskHarness.make()
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: store, extra: ["--retention", "2s"])
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        let worker = try SluiceBinary.start(Self.workerArguments(h))
        defer { SluiceBinary.stopIfRunning(worker) }
        try await coordinator.waitUntilHealthy()
        for yaml in [Self.pipeline, "name: slow\nsteps:\n  - id: wait\n    delay: 1h\n"] {
            let register = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/workflows", body: Array(yaml.utf8),
                                                                contentType: "application/yaml")
            #expect(register.status == 201, "\(register.body)")
        }
        let slow = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/runs", body: Array(#"{"workflow": "slow"}"#.utf8))
        let quick = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/runs",
                                                         body: Array(#"{"workflow": "pipeline", "input": {"items": [1]}}"#.utf8))
        guard case .string(let slowID)? = slow.body["runID"], case .string(let quickID)? = quick.body["runID"] else {
            Issue.record("runs not started: \(slow) \(quick)")
            return
        }
        _ = try await coordinator.wait(for: quickID, "completed")
        // Deleted within a few seconds of turning 2 s old (the coordinator looks every second).
        _ = try await eventually(30, "the finished run to be deleted") { () -> Bool? in
            let (status, _) = try await CoordinatorProcess.request("GET", coordinator.api + "/v1/runs/\(quickID)")
            return status == 404 ? true : nil
        }
        #expect(try await coordinator.run(slowID)?["status"] == .string("running"), "a run still going is kept")
        coordinator.process.terminate()
        #expect(try await SluiceBinary.exitStatus(of: coordinator.process) == 0)
        await h.broker.close()
    }

    @Test("two coordinators on one PostgreSQL: the active one is killed, the standby takes over, all runs complete")
    func standbyTakesOver() async throws {
        let h = try await TaskHarness.make()
        let store = try await SharedPostgres.createDatabase()
        // One partition: one active coordinator, the other standing by.
        let first = try CoordinatorProcess.start(h, store: store, extra: ["--partitions", "1"])
        defer { SluiceBinary.stopIfRunning(first.process) }
        try await first.waitUntilHealthy(active: true)
        let second = try CoordinatorProcess.start(h, store: store, extra: ["--partitions", "1"])
        defer { SluiceBinary.stopIfRunning(second.process) }
        try await second.waitUntilHealthy(active: false)
        let worker = try SluiceBinary.start(Self.workerArguments(h))
        defer { SluiceBinary.stopIfRunning(worker) }
        let ids = try await first.startPipelineRuns(20, width: 3)
        // The standby refuses commands.
        let refused = try await CoordinatorProcess.request("POST", second.api + "/v1/runs", body: Array(#"{"workflow": "pipeline"}"#.utf8))
        #expect(refused.status == 503)
        kill(first.process.processIdentifier, SIGKILL)
        _ = try await SluiceBinary.exitStatus(of: first.process)
        let takeover = ContinuousClock.now
        try await second.waitUntilHealthy(active: true, seconds: 30)
        let took = ContinuousClock.now - takeover
        // At most one lease TTL (6 s) and a poll (2 s) on an idle machine; the bound leaves room for a loaded one.
        #expect(took < .seconds(20), "the standby took over within seconds (took \(took))")
        for id in ids { _ = try await second.wait(for: id, "completed") }
        second.process.terminate()
        _ = try await SluiceBinary.exitStatus(of: second.process)
        await h.broker.close()
    }
}
