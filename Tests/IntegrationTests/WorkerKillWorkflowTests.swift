import Foundation
import SluiceAPI
import SluiceCore
import SluiceRabbitMQ
import SluiceSpawn
import SluiceTesting
import SluiceWorkflow
import Testing

@Suite("Workflow steps across a worker SIGKILL")
struct WorkerKillWorkflowTests {
    /// Ten elements at a time, half a second each: the 200 take about 10 s,
    /// so the kill (after 40, as the events recorder sees them, which lags
    /// under load) lands in the middle; with 0.2 s and no limit the whole map
    /// was done before the recorder saw 40.
    static let definition = """
        name: killmap
        steps:
          - id: each
            map: { over: input.items, task: sluice.sleep, arguments: { seconds: 0.5 }, maxParallel: 10 }
          - id: all
            after: [each]
            task: sluice.echo
            arguments: { outputs: "${steps.each.output}" }
        """

    @Test("a worker SIGKILLed while it runs a map's elements (their outcomes going out in packs): another worker runs the rest, and every element's outcome reaches the coordinator")
    func workerKilled() async throws {
        let h = try await TaskHarness.make()
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: store)
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        let events = try await h.recordEvents()
        let first = try SluiceBinary.start(CoordinatorProcessTests.workerArguments(h))
        defer { SluiceBinary.stopIfRunning(first) }
        try await coordinator.waitUntilHealthy()
        #expect(try await coordinator.client.registerWorkflow(yaml: Self.definition).name == "killmap")
        let items = JSONValue.object(["items": .array((0..<200).map { .number(Double($0)) })])
        let runID = try await coordinator.client.startRun(StartRunRequest(workflow: "killmap", input: items)).runID

        let before = try await events.waitUntil("40 elements done", seconds: 180) {
            $0.filter { $0.kind == .succeeded && $0.workflowRunID == runID }.count >= 40
        }
        first.signal(SIGKILL)
        #expect(before.filter { $0.kind == .succeeded && $0.workflowRunID == runID }.count < 200, "the kill came after every element had run")
        let second = try SluiceBinary.start(CoordinatorProcessTests.workerArguments(h))
        defer { SluiceBinary.stopIfRunning(second) }

        let done = try await coordinator.wait(for: runID, "completed", seconds: 240)
        guard case .array(let outputs)? = done["steps"]?["all"]?["output"]?["outputs"] else {
            Issue.record("no outputs: \(done.jsonText.prefix(500))")
            return
        }
        #expect(outputs.count == 200)
        #expect(outputs.allSatisfy { $0 == ["slept": 0.5] }, "every element succeeded: \(outputs.filter { $0 != ["slept": 0.2] }.prefix(3))")
        await h.broker.close()
    }
}
