import Foundation
import Logging
@testable import SluiceCoordinator
import SluiceCore
import SluiceWorkflow
import Testing

/// Two engines sharing the four partitions of one store: what
/// concerns a run in the other's partition goes through the outbox as a
/// run message, and each applies only its own runs.
@Suite("Run messages between partitions (no server)")
struct PartitionEngineTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    /// A parent id whose first child (`<id>.sub.0`) is in another of 4
    /// partitions. (Of 2 they never differ: FNV-1a's lowest bit is the
    /// parity of the bytes, and `.sub.0` adds an even count of odd bytes.)
    static func parentAcrossPartitions() -> String {
        for i in 0..<10_000 {
            let id = "parent-\(i)"
            if Topology.partition(runID: id, of: 4) != Topology.partition(runID: RunEngine.childRunID("\(id)/sub/0"), of: 4) { return id }
        }
        fatalError("no parent id of 10,000 has its child in another partition")
    }

    func succeeded(_ taskID: String, run: String, output: String) -> TaskEvent {
        var event = TaskEvent(kind: .succeeded, task: TaskEnvelope(id: taskID, name: "t", queue: "q", arguments: [], workflowRunID: run))
        event.result = output
        return event
    }

    /// The run messages waiting in the outbox, deleted from it (as a relay would, once published).
    func takeMessages(_ store: any WorkflowStore) async throws -> [RunMessage] {
        let rows = try await store.unsentOutbox(limit: 100)
        let messages = rows.compactMap { row -> RunMessage? in
            if case .message(let message) = row.item { return message }
            return nil
        }
        try await store.commit([], sent: rows.filter { $0.task == nil }.map(\.id))
        return messages
    }

    @Test("a sub-workflow in the other partition: its start is written here, its events and its end travel as messages, and the parent completes")
    func childAcrossPartitions() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-partitions-\(UUID().uuidString).sqlite").path
        let store = try await SQLiteWorkflowStore.open(path: path)
        let parentID = Self.parentAcrossPartitions()
        let childID = RunEngine.childRunID("\(parentID)/sub/0")
        let parentPartition = Topology.partition(runID: parentID, of: 4)
        let first = RunEngine(store: store), second = RunEngine(store: store)
        try await first.lead(partitions: [parentPartition], of: 4, fence: nil)
        try await second.lead(partitions: Set(0..<4).subtracting([parentPartition]), of: 4, fence: nil)
        try await first.register(WorkflowDefinition(name: "one") { WorkflowStep.task("a", "t") })
        try await first.register(WorkflowDefinition(name: "outer") {
            WorkflowStep.workflow("sub", "one")
            WorkflowStep.task("b", "t", after: ["sub"])
        })
        _ = try await first.start(workflow: "outer", input: [:], runID: parentID, at: t0)
        // The child was created by the parent's engine, with its first task, in the other partition.
        #expect(try await store.run(id: childID)?.status == .running)
        #expect(try await store.unsentOutbox(limit: 10).compactMap(\.task?.taskID) == ["\(childID)/a/0"])

        // The child's outcome reaches the parent's engine (a dead letter, say): forwarded, not applied.
        try await first.apply([succeeded("\(childID)/a/0", run: childID, output: #""done""#)])
        #expect(try await store.run(id: childID)?.status == .running)
        let toChild = try await takeMessages(store)
        #expect(toChild.map(\.runID) == [childID])

        // The child's engine applies it: the child completes, and its end goes to the parent as a message.
        try await second.apply([], messages: toChild)
        #expect(try await store.run(id: childID)?.status == .completed)
        #expect(try await store.run(id: parentID)?.steps["sub"]?.status == .running)
        let toParent = try await takeMessages(store)
        #expect(toParent.count == 1)
        guard case .childFinished(_, true, let output?, _, _)? = toParent.first?.event else {
            Issue.record("expected the child's end: \(toParent)")
            return
        }
        #expect(output == ["a": "done"])
        // Applied twice (a duplicate publish): the same as once.
        try await first.apply([], messages: toParent + toParent)
        let parent = try #require(try await store.run(id: parentID))
        #expect(parent.steps["sub"]?.status == .succeeded && parent.steps["sub"]?.output == ["a": "done"])
        #expect(parent.steps["b"]?.status == .running)

        // A command for a run the other leads is forwarded; an unknown run is refused.
        #expect(try await second.apply(.pause(at: t0), to: parentID) == .forwarded)
        await #expect(throws: RunEngine.EngineError.self) { try await second.apply(.pause(at: t0), to: "nobody") }
        try await store.close()
    }

    @Test("forwarded pause, resume and step retries apply once when delivered again")
    func commandsApplyOnce() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-partitions-\(UUID().uuidString).sqlite").path
        let store = try await SQLiteWorkflowStore.open(path: path)
        let runID = (0..<1_000).map { "run-\($0)" }.first { Topology.partition(runID: $0, of: 4) == 0 }!
        let leader = RunEngine(store: store), other = RunEngine(store: store)
        try await leader.lead(partitions: [0], of: 4, fence: nil)
        try await other.lead(partitions: [1, 2, 3], of: 4, fence: nil)
        try await leader.register(WorkflowDefinition(name: "two") {
            WorkflowStep.task("a", "t")
            WorkflowStep.task("b", "t", after: ["a"])
        })
        _ = try await leader.start(workflow: "two", input: [:], runID: runID, at: t0)

        #expect(try await other.apply(.pause(at: t0), to: runID) == .forwarded)
        #expect(try await other.apply(.resume(at: t0), to: runID) == .forwarded)
        let pauseAndResume = try await takeMessages(store)
        #expect(pauseAndResume.count == 2 && pauseAndResume.allSatisfy { $0.id != nil })
        // The pause published twice (by its sender and by the leader's relay) arrives after the resume.
        try await leader.apply([], messages: pauseAndResume + [pauseAndResume[0]])
        #expect(try await store.run(id: runID)?.status == .running)

        try await leader.apply([succeeded("\(runID)/a/0", run: runID, output: "1")])
        #expect(try await other.apply(.retryStep(stepID: "a", rerun: true, at: t0), to: runID) == .forwarded)
        let retry = try await takeMessages(store)
        #expect(retry.count == 1)
        try await leader.apply([], messages: retry)
        try await leader.apply([], messages: retry)  // redelivered after the leader applied it
        let run = try #require(try await store.run(id: runID))
        #expect(run.steps["a"]?.generation == 1)
        #expect(run.steps["a"]?.status == .running)
        #expect(run.appliedMessages?.count == 3)
        // Ids survive a reload from the store (a new leader after a crash).
        await leader.dropCachedRuns()
        try await leader.apply([], messages: retry)
        #expect(try await store.run(id: runID)?.steps["a"]?.generation == 1)
        try await store.close()
    }
}
