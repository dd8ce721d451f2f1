import Foundation
import SluiceAMQP
import SluiceClient
import SluiceAPI
import SluiceCore
import SluiceLocalBroker
import SluiceRabbitMQ
import SluiceTesting
import SluiceWire
import SluiceWorker
import SluiceWorkflow
import Synchronization
import Testing

@Suite("Revoking tasks on the real broker")
struct RevocationIntegrationTests {
    /// The ids of the tasks handlers ran.
    final class Ran: Sendable {
        let ids = Mutex<[String]>([])
    }

    /// A registry whose `job` handler records the ids it ran, and whose
    /// `hang` handler waits until cancelled.
    static func registry(_ ran: Ran) -> HandlerRegistry {
        var registry = HandlerRegistry()
        registry.register("job") { context in
            ran.ids.withLock { $0.append(context.task.id) }
            return nil
        }
        registry.register("hang") { _ in
            try await Task.sleep(for: .seconds(3600))
            return nil
        }
        return registry
    }

    @Test("revoked before any worker ran (CLI and client): workers started later dead-letter them as revoked; terminate stops a running one; others run")
    func revokeAndTerminate() async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        let q = "rv"
        try await h.broker.prepare(queues: [q])
        let events = try await h.recordEvents()
        let client = TaskClient(broker: h.broker)
        let byCLI = try await client.enqueue(name: "job", json: Array("{}".utf8), options: .init(queue: q))
        let byClient = try await client.enqueue(name: "job", json: Array("{}".utf8), options: .init(queue: q))
        let kept = try await client.enqueue(name: "job", json: Array("{}".utf8), options: .init(queue: q))
        let cli = try await SluiceBinary.run(["task", "revoke", byCLI, "--reason", "not wanted", "--json", "--url", h.url,
                                              "--prefix", h.topology.prefix])
        #expect(cli.status == 0, "\(cli.output)")
        #expect(try JSONValue.parse(Array(cli.output.utf8))["revoked"] == [.string(byCLI)], "\(cli.output)")
        try await client.revoke([byClient])

        let ran = Ran()
        let worker = h.startWorker(queues: [q], registry: Self.registry(ran)) { $0.publishStartedEvents = true }
        let outcomes = try await events.waitForOutcomes([byCLI, byClient, kept])
        #expect(outcomes[byCLI]?.kind == .dead && outcomes[byCLI]?.deadReason == .revoked, "\(String(describing: outcomes[byCLI]))")
        #expect(outcomes[byCLI]?.errorMessage?.contains("not wanted") == true)
        #expect(outcomes[byClient]?.deadReason == .revoked)
        #expect(outcomes[kept]?.kind == .succeeded)
        #expect(ran.ids.withLock { $0 } == [kept], "no revoked task's handler ran")

        // A running task: a plain revocation leaves it be, terminate stops it.
        let hanging = try await client.enqueue(name: "hang", json: Array("{}".utf8), options: .init(queue: q))
        _ = try await events.waitUntil("the hanging task's start") { $0.contains { $0.taskID == hanging && $0.kind == .started } }
        try await client.revoke([hanging], terminate: true, reason: "stuck")
        let stopped = try await events.waitForOutcomes([hanging])[hanging]
        #expect(stopped?.kind == .dead && stopped?.deadReason == .revoked, "\(String(describing: stopped))")
        try await worker.stop()

        // A worker started after all this still refuses what was revoked, even redelivered from the dead queue.
        let dead = try await h.takeDead(q)
        #expect(Set(dead.compactMap { $0.properties.messageId }) == [byCLI, byClient, hanging])
        let again = try await client.enqueue(name: "job", json: Array("{}".utf8), options: .init(queue: q, id: byClient))
        let second = h.startWorker(queues: [q], registry: Self.registry(ran))
        defer { Task { try? await second.stop() } }
        _ = try await events.waitUntil("the re-enqueued revoked task's second dead event") { events in
            events.filter { $0.taskID == again && $0.kind == .dead && $0.deadReason == .revoked }.count == 2
        }
        #expect(ran.ids.withLock { $0 } == [kept])
    }

    @Test("the broker closes a worker's revocation connection: the worker follows the stream again, and a later terminate still stops its running task")
    func followerReconnects() async throws {
        let name = "revocation-follower-\(UInt32.random(in: 0...UInt32.max))"
        let h = try await TaskHarness.make(connectionName: name)
        defer { Task { await h.broker.close() } }
        let q = "rvf"
        try await h.broker.prepare(queues: [q])
        let events = try await h.recordEvents()
        let worker = h.startWorker(queues: [q], registry: Self.registry(Ran())) { $0.publishStartedEvents = true }
        defer { Task { try? await worker.stop() } }
        let hanging = try await TaskClient(broker: h.broker).enqueue(name: "hang", json: Array("{}".utf8), options: .init(queue: q))
        _ = try await events.waitUntil("the hanging task's start") { $0.contains { $0.taskID == hanging && $0.kind == .started } }

        // The worker's second connection, which reads the stream.
        let follower = { @Sendable () async throws -> String? in try await SharedBroker.connectionPID(named: "\(name) (revocations)") }
        let closed = try #require(try await follower(), "no revocation connection named \(name) (revocations)")
        _ = try await SharedBroker.node.ctl("close_connection", closed, "test: revocation follower")
        _ = try await eventually(120, "the worker to open its revocation connection again") { () -> Bool? in
            guard let now = try await follower(), now != closed else { return nil }
            return true
        }
        // Published after the reconnect: read by the new connection.
        try await TaskClient(broker: h.broker).revoke([hanging], terminate: true, reason: "after the reconnect")
        let stopped = try await events.waitForOutcomes([hanging])[hanging]
        #expect(stopped?.kind == .dead && stopped?.deadReason == .revoked, "\(String(describing: stopped))")
    }

    @Test("a revocation survives a broker restart (own node): a worker started afterwards refuses the task")
    func brokerRestart() async throws {
        let node = PrivateBroker.unique("revoke")
        try await node.start()
        do {
            let h = try await TaskHarness.make(url: node.amqpURL)
            let q = "rv"
            try await h.broker.prepare(queues: [q])
            let client = TaskClient(broker: h.broker)
            let revoked = try await client.enqueue(name: "job", json: Array("{}".utf8), options: .init(queue: q))
            let kept = try await client.enqueue(name: "job", json: Array("{}".utf8), options: .init(queue: q))
            try await client.revoke([revoked])
            await h.broker.close()
            try await node.stop()
            try await node.start()

            // The same prefix as before the restart.
            let same = try await TaskHarness.make(url: node.amqpURL, prefix: h.topology.prefix)
            let events = try await same.recordEvents()
            let ran = Ran()
            let worker = same.startWorker(queues: [q], registry: Self.registry(ran))
            let outcomes = try await events.waitForOutcomes([revoked, kept])
            #expect(outcomes[revoked]?.deadReason == .revoked, "\(String(describing: outcomes[revoked]))")
            #expect(outcomes[kept]?.kind == .succeeded)
            #expect(ran.ids.withLock { $0 } == [kept])
            try await worker.stop()
            await same.broker.close()
        } catch {
            try? await node.destroy()
            throw error
        }
        try await node.destroy()
    }

    @Test("cancelling a workflow run revokes its step tasks not yet run; POST /v1/tasks/{id}/revoke revokes a task")
    func workflowCancelAndAPI() async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        try await h.broker.prepare(queues: ["wf"])
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: store)
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        try await coordinator.waitUntilHealthy()
        let api = coordinator.api
        let events = try await h.recordEvents()

        let definition = "name: revoked\nsteps:\n  - id: one\n    task: job\n  - id: each\n    map:\n      over: input.items\n      task: job\n"
        let client = coordinator.client
        #expect(try await client.registerWorkflow(yaml: definition).name == "revoked")
        let runID = try await client.startRun(StartRunRequest(workflow: "revoked", input: ["items": [1, 2]])).runID
        // No worker yet: the three step tasks wait in the queue.
        _ = try await eventually(60, "the run's steps to be running") { () -> Bool? in
            let run = try await client.run(runID)
            return run.steps["one"]?.status == .running && run.steps["each"]?.status == .running ? true : nil
        }
        #expect(try await client.cancel(run: runID, reason: "test").status == .cancelled)

        let plain = try await TaskClient(broker: h.broker).enqueue(name: "job", json: Array("{}".utf8), options: .init(queue: "wf"))
        let revokedByAPI = try await CoordinatorProcess.request("POST", api + "/v1/tasks/\(plain)/revoke",
                                                                body: Array(#"{"reason": "by api"}"#.utf8))
        #expect(revokedByAPI.status == 202 && revokedByAPI.body["revoked"] == true, "\(revokedByAPI.body)")
        let bad = try await CoordinatorProcess.request("POST", api + "/v1/tasks/x/revoke", body: Array("[1]".utf8))
        #expect(bad.status == 400, "\(bad.body)")

        let steps = ["\(runID)/one/0", "\(runID)/each/0/0", "\(runID)/each/0/1"]
        // The coordinator revokes after its commit, on its own time: read the stream until it has.
        try await h.broker.prepareRevocations()
        let stream = try await h.broker.followRevocations(prefetch: 100)
        let seen = Mutex<Set<String>>([])
        do {
            try await within(60, "the coordinator's revocation of the run's steps in the stream") {
                for try await entry in stream {
                    try? await entry.ack()
                    let ids = (try? Revocation.decode(entry.body))?.taskIDs ?? []
                    if seen.withLock({ $0.formUnion(ids); return $0.isSuperset(of: steps) }) { return }
                }
            }
        } catch let timedOut as TimedOut {
            Issue.record("\(timedOut); seen \(seen.withLock { $0 }); the coordinator's log ends:\n\(SluiceBinary.logTail(of: coordinator.process, lines: 60))")
            await stream.close()
            return
        }
        await stream.close()
        let ran = Ran()
        let worker = h.startWorker(queues: ["wf"], registry: Self.registry(ran))
        defer { Task { try? await worker.stop() } }
        let outcomes = try await events.waitForOutcomes(Set(steps + [plain]))
        for id in steps + [plain] {
            #expect(outcomes[id]?.kind == .dead && outcomes[id]?.deadReason == .revoked, "\(id): \(String(describing: outcomes[id]))")
        }
        #expect(ran.ids.withLock { $0 }.isEmpty, "no step of the cancelled run ran")
        let (_, run) = try await CoordinatorProcess.request("GET", api + "/v1/runs/\(runID)")
        #expect(run["status"] == "cancelled", "the revoked steps' dead events change nothing in the cancelled run")
    }
}
