import Foundation
import MetricsTestKit
@testable import SluiceCoordinator
import SluiceCore
import SluiceWorkflow
import Testing

@Suite("The engine's metrics (no server)")
struct EngineMetricsTests {
    @Test("each commit is timed (sluice_coordinator_commit_seconds) and its transitions counted")
    func commitsTimed() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-metrics-\(UUID().uuidString).sqlite").path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let store = try await SQLiteWorkflowStore.open(path: path)
        let metrics = TestMetrics()
        let engine = RunEngine(store: store, metricsFactory: metrics)
        try await engine.register(WorkflowDefinition(name: "two") {
            WorkflowStep.task("a", "t")
            WorkflowStep.task("b", "t", after: ["a"])
        })
        let run = try await engine.start(workflow: "two", input: [:])
        var event = TaskEvent(kind: .succeeded, task: TaskEnvelope(id: "\(run.runID)/a/0", name: "t", queue: "q", arguments: [],
                                                                    workflowRunID: run.runID, workflowStep: "a"))
        event.result = "1"
        try await engine.apply([event])
        #expect(try await store.run(id: run.runID)?.steps["a"]?.status == .succeeded, "the event was applied")
        // The start, then the event: two commits, each timed.
        let commits = try metrics.expectTimer("sluice_coordinator_commit_seconds").values
        #expect(commits.count == 2)
        #expect(commits.allSatisfy { $0 > 0 })
        #expect(try metrics.expectCounter("sluice_workflow_transitions_total").totalValue >= 2)
        try await store.close()
    }
}
