import Foundation
import SluiceCoordinator
import SluiceCore
import SluiceRabbitMQ
import SluiceTesting
import SluiceWorkflow
import Testing
import SluiceAPI

/// Checks JSON against the schemas of an OpenAPI 3.1 document: `$ref`,
/// `type` (one or several), `enum`, `const`, `properties`, `required`,
/// `additionalProperties`, `items`, `allOf`, `anyOf` and `oneOf` (at least
/// one must match). Formats and patterns are not checked.
struct SchemaChecker {
    let document: JSONValue

    func errors(_ value: JSONValue, against schema: JSONValue, at path: String = "$") -> [String] {
        guard case .object(let s) = schema else { return [] }
        if case .string(let ref)? = s["$ref"] {
            var node: JSONValue? = document
            for part in ref.dropFirst(2).split(separator: "/") { node = node?[String(part)] }
            guard let target = node else { return ["\(path): \(ref) does not resolve"] }
            return errors(value, against: target, at: path)
        }
        var found: [String] = []
        if case .array(let all)? = s["allOf"] { for sub in all { found += errors(value, against: sub, at: path) } }
        for key in ["anyOf", "oneOf"] {
            if case .array(let options)? = s[key], !options.contains(where: { errors(value, against: $0, at: path).isEmpty }) {
                found.append("\(path): matches none of \(key): \(value.jsonText.prefix(200))")
            }
        }
        if let type = s["type"] {
            let allowed: [String] = switch type {
            case .string(let t): [t]
            case .array(let ts): ts.compactMap { if case .string(let t) = $0 { t } else { nil } }
            default: []
            }
            if !allowed.isEmpty, !allowed.contains(where: { Self.matches(value, $0) }) {
                return found + ["\(path): expected \(allowed.joined(separator: " or ")), got \(value.jsonText.prefix(120))"]
            }
        }
        if case .array(let options)? = s["enum"], !options.contains(value) {
            found.append("\(path): \(value.jsonText.prefix(80)) is not one of \(JSONValue.array(options).jsonText.prefix(200))")
        }
        if let constant = s["const"], constant != value { found.append("\(path): expected \(constant.jsonText)") }
        switch value {
        case .object(let o):
            let properties: [String: JSONValue] = if case .object(let p)? = s["properties"] { p } else { [:] }
            if case .array(let required)? = s["required"] {
                for case .string(let key) in required where o[key] == nil { found.append("\(path): missing required '\(key)'") }
            }
            for (key, item) in o {
                if let sub = properties[key] {
                    found += errors(item, against: sub, at: "\(path).\(key)")
                } else if let extra = s["additionalProperties"] {
                    if extra == .bool(false) { found.append("\(path): '\(key)' is not in the schema") }
                    else { found += errors(item, against: extra, at: "\(path).\(key)") }
                }
            }
        case .array(let items):
            if let sub = s["items"] {
                for (i, item) in items.enumerated() { found += errors(item, against: sub, at: "\(path)[\(i)]") }
            }
        default:
            break
        }
        return found
    }

    static func matches(_ value: JSONValue, _ type: String) -> Bool {
        switch (type, value) {
        case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object), ("number", .number): true
        case ("integer", .number(let n)): n.rounded() == n
        default: false
        }
    }
}

@Suite("The coordinator answers in the shapes its OpenAPI document gives")
struct OpenAPIContractTests {
    /// What one call returned, for the route it exercised.
    struct Call {
        var route: APIRoute
        var status: Int
        var body: JSONValue
    }

    /// The response's documented schema for `status` (nil: the status is not documented).
    static func responseSchema(_ document: JSONValue, _ route: APIRoute, _ status: Int) -> JSONValue?? {
        let operation = document["paths"]?[route.path]?[route.method.lowercased()]
        guard let response = operation?["responses"]?[String(status)] ?? operation?["responses"]?["default"] else { return nil }
        var resolved: JSONValue? = response
        if case .string(let ref)? = response["$ref"] {
            resolved = document
            for part in ref.dropFirst(2).split(separator: "/") { resolved = resolved?[String(part)] }
        }
        return .some(resolved?["content"]?["application/json"]?["schema"])
    }

    @Test("every route, its success and its common refusals, against a live coordinator and worker: statuses documented, bodies in their schemas")
    func shapes() async throws {
        let h = try await TaskHarness.make()
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: store, extra: ["--queue-metrics-interval", "1s"])
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        let worker = try SluiceBinary.start(CoordinatorProcessTests.workerArguments(h))
        defer { SluiceBinary.stopIfRunning(worker) }
        try await coordinator.waitUntilHealthy()
        let api = coordinator.api
        var calls: [Call] = []
        func call(_ route: APIRoute, _ path: String, body: String? = nil, yaml: Bool = false) async throws -> JSONValue {
            let (status, json) = try await CoordinatorProcess.request(route.method, api + path, body: body.map { Array($0.utf8) },
                                                                      contentType: yaml ? "application/yaml" : "application/json")
            calls.append(Call(route: route, status: status, body: json))
            return json
        }

        _ = try await call(.getHealth, "/healthz")
        _ = try await call(.getStats, "/v1/stats")
        _ = try await call(.getOpenAPIDocument, "/v1/openapi.json")
        let trip = """
            name: trip
            queue: wf
            steps:
              - id: each
                map: { over: input.items, task: sluice.echo }
                compensate: { task: sluice.echo, arguments: { undo: "${item}" } }
              - id: approval
                after: [each]
                signal: { name: approved, timeout: 1h }
              - id: charge
                after: [approval]
                task: sluice.fail
                arguments: { times: 9, message: declined }
                maxAttempts: 1
            """
        _ = try await call(.registerWorkflow, "/v1/workflows", body: trip, yaml: true)
        _ = try await call(.registerWorkflow, "/v1/workflows", body: "name: [", yaml: true)
        _ = try await call(.registerWorkflow, "/v1/workflows",
                           body: #"{"name": "limited", "concurrency": {"limit": 1, "key": "${input.k}"}, "steps": [{"id": "w", "signal": "go"}]}"#)
        _ = try await call(.listWorkflows, "/v1/workflows")
        _ = try await call(.getWorkflow, "/v1/workflows/trip/1")
        _ = try await call(.getWorkflow, "/v1/workflows/nope/1")
        let started = try await call(.startRun, "/v1/runs", body: #"{"workflow": "trip", "input": {"items": [1, 2, 3]}}"#)
        _ = try await call(.startRun, "/v1/runs", body: #"{"workflow": "nope"}"#)
        _ = try await call(.startRun, "/v1/runs", body: #"{"nothing": true}"#)
        guard case .string(let runID)? = started["runID"] else { Issue.record("no run: \(started)"); return }
        // Signals: kept before the wait, refused for a name nobody waits for.
        _ = try await call(.signalRun, "/v1/runs/\(runID)/signals/approved", body: #"{"data": {"by": "ana"}, "id": "s1"}"#)
        _ = try await call(.signalRun, "/v1/runs/\(runID)/signals/other", body: "{}")
        _ = try await coordinator.wait(for: runID, "compensated")
        _ = try await call(.getRun, "/v1/runs/\(runID)")
        _ = try await call(.getRun, "/v1/runs/nope")
        _ = try await call(.listRuns, "/v1/runs?limit=5")
        _ = try await call(.listRuns, "/v1/runs?status=bogus")
        _ = try await call(.signalRun, "/v1/runs/\(runID)/signals/approved", body: "{}")
        // A run waiting for a concurrency slot, paused, resumed, cancelled; a retry refused.
        let first = try await call(.startRun, "/v1/runs", body: #"{"workflow": "limited", "input": {"k": "a"}}"#)
        let second = try await call(.startRun, "/v1/runs", body: #"{"workflow": "limited", "input": {"k": "a"}}"#)
        guard case .string(let firstID)? = first["runID"], case .string(let secondID)? = second["runID"] else {
            Issue.record("no runs: \(first), \(second)")
            return
        }
        _ = try await coordinator.wait(for: firstID, "running")
        _ = try await call(.getRun, "/v1/runs/\(secondID)")
        _ = try await call(.pauseRun, "/v1/runs/\(firstID)/pause")
        _ = try await call(.resumeRun, "/v1/runs/\(firstID)/resume")
        _ = try await call(.retryRunStep, "/v1/runs/\(firstID)/retry", body: #"{"step": "w"}"#)
        _ = try await call(.retryRunStep, "/v1/runs/\(firstID)/retry", body: "{}")
        _ = try await call(.cancelRun, "/v1/runs/\(secondID)/cancel", body: #"{"reason": "test"}"#)
        _ = try await call(.cancelRun, "/v1/runs/nope/cancel")
        _ = try await call(.deleteWorkflow, "/v1/workflows/limited/1")
        _ = try await call(.cancelRun, "/v1/runs/\(firstID)/cancel")
        _ = try await call(.deleteWorkflow, "/v1/workflows/limited/1")
        _ = try await call(.deleteWorkflow, "/v1/workflows/limited/1")
        // Schedules.
        _ = try await call(.putSchedule, "/v1/schedules",
                           body: #"{"id": "nightly", "cron": "0 3 * * *", "action": {"task": {"name": "sluice.echo", "arguments": {}}}}"#)
        _ = try await call(.putSchedule, "/v1/schedules", body: #"{"id": "bad", "cron": "every day"}"#)
        _ = try await call(.listSchedules, "/v1/schedules")
        let paused = try await call(.pauseSchedule, "/v1/schedules/nightly/pause")
        #expect(paused["spec"]?["paused"] == .bool(true) && paused["nextFireAt"] == nil, "\(paused.jsonText)")
        _ = try await call(.listSchedules, "/v1/schedules")
        let resumed = try await call(.resumeSchedule, "/v1/schedules/nightly/resume")
        #expect(resumed["spec"]?["paused"] == .bool(false) && resumed["nextFireAt"] != nil, "\(resumed.jsonText)")
        _ = try await call(.pauseSchedule, "/v1/schedules/nope/pause")
        _ = try await call(.deleteSchedule, "/v1/schedules/nightly")
        _ = try await call(.deleteSchedule, "/v1/schedules/nightly")
        // Tasks.
        let enqueued = try await call(.enqueueTask, "/v1/tasks", body: #"{"name": "sluice.echo", "queue": "wf", "arguments": {"x": 1}, "track": true}"#)
        _ = try await call(.enqueueTask, "/v1/tasks", body: #"{"queue": "wf"}"#)
        if case .string(let taskID)? = enqueued["id"] ?? enqueued["taskID"] {
            let deadline = TestTime.deadline(60)
            while try await CoordinatorProcess.request("GET", api + "/v1/tasks/\(taskID)").status != 200, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            _ = try await call(.getTask, "/v1/tasks/\(taskID)")
            _ = try await call(.revokeTask, "/v1/tasks/\(taskID)/revoke", body: #"{"reason": "test"}"#)
        } else {
            Issue.record("no task id in \(enqueued)")
        }
        _ = try await call(.getTask, "/v1/tasks/nope")
        // A task id with a '/' (a workflow step's) is one path segment for the typed client, and the server decodes it.
        do {
            _ = try await coordinator.client.task("run/step/0")
            Issue.record("a task nobody tracks was found")
        } catch let failure as CoordinatorClient.Failure {
            #expect(failure.kind == .refused(status: 404, code: "not_found"), "\(failure)")
            #expect(failure.message.contains("run/step/0"), "the id reached the server decoded: \(failure.message)")
        }
        // Queues and workers (once sampled), dead tasks (the trip's charge died).
        _ = try await eventually(60, "the coordinator to sample queue wf and hear the worker") { () async throws -> Bool? in
            let queues = try await CoordinatorProcess.request("GET", api + "/v1/queues")
            let workers = try await CoordinatorProcess.request("GET", api + "/v1/workers")
            guard case .array(let rows)? = queues.body["queues"], case .array(let beats)? = workers.body["workers"] else { return nil }
            return rows.contains { $0["queue"] == "wf" } && !beats.isEmpty ? true : nil
        }
        _ = try await call(.listQueues, "/v1/queues")
        _ = try await call(.listWorkers, "/v1/workers")
        let dead = try await call(.listDeadTasks, "/v1/queues/wf/dead?limit=10")
        if case .array(let tasks)? = dead["tasks"] {
            #expect(tasks.contains { $0["name"] == "sluice.fail" }, "the charge's dead task: \(dead.jsonText.prefix(300))")
        } else {
            Issue.record("no dead tasks listed: \(dead.jsonText.prefix(300))")
        }
        _ = try await call(.listDeadTasks, "/v1/queues/wf/dead?limit=0")
        _ = try await call(.listDeadTasks, "/v1/queues/never-used-\(UUID().uuidString.prefix(8))/dead")
        _ = try await call(.replayDeadTasks, "/v1/queues/wf/dead/replay", body: #"{"ids": ["nope"]}"#)
        _ = try await call(.replayDeadTasks, "/v1/queues/wf/dead/replay", body: "{}")
        _ = try await call(.purgeDeadTasks, "/v1/queues/wf/dead/purge")
        _ = try await call(.purgeDeadTasks, "/v1/queues/wf~high/dead/purge")
        let metrics = try await CoordinatorProcess.request("GET", api + "/metrics")
        #expect(metrics.status == 200)

        let document = try JSONValue.parse(Array(OpenAPIDocument.json.utf8))
        #expect(calls.first { $0.route == .getOpenAPIDocument }?.body == document, "the served document")
        let checker = SchemaChecker(document: document)
        // The checker catches a wrong shape (so that its silence below means something).
        let runSchema = JSONValue.object(["$ref": "#/components/schemas/RunState"])
        #expect(!checker.errors(["runID": 1], against: runSchema).isEmpty)
        #expect(!checker.errors(["error": ["code": "x"]], against: .object(["$ref": "#/components/schemas/Error"])).isEmpty)
        var checked = 0
        for c in calls {
            guard let schema = Self.responseSchema(document, c.route, c.status) else {
                Issue.record("\(c.route.method) \(c.route.path) answered \(c.status), which its document does not list: \(c.body.jsonText.prefix(300))")
                continue
            }
            guard let schema else { continue }
            checked += 1
            let errors = checker.errors(c.body, against: schema)
            #expect(errors.isEmpty, "\(c.route.operationID) \(c.status): \(errors.prefix(5)) in \(c.body.jsonText.prefix(600))")
        }
        #expect(checked >= calls.count - 1, "\(checked) of \(calls.count) answers had a documented JSON schema")
        let exercised = Set(calls.map(\.route))
        #expect(exercised.union([.getMetrics]) == Set(APIRoute.allCases), "not exercised: \(Set(APIRoute.allCases).subtracting(exercised))")
        kill(coordinator.process.processIdentifier, SIGTERM)
        _ = try await SluiceBinary.exitStatus(of: coordinator.process)
        await h.broker.close()
    }
}
