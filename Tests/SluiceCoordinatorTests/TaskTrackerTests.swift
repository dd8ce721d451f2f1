import Foundation
@testable import SluiceCoordinator
import SluiceCore
import Testing
import SluiceAPI

@Suite("Task tracking in the coordinator (no server)")
struct TaskTrackerTests {
    @Test("a tracking event counts only under a ~track key that ends in its own kind (a producer's queued key cannot carry an outcome)")
    func keyMatchesKind() {
        let task = TaskEnvelope(name: "n", queue: "q.a", arguments: [], track: true)
        let succeeded = TaskEvent(kind: .succeeded, task: task)
        #expect(TaskTracker.matchesKey(succeeded, "~track.q.a.succeeded"))
        #expect(!TaskTracker.matchesKey(succeeded, "~track.q.a.queued"), "forged: an outcome under the producer's key")
        #expect(!TaskTracker.matchesKey(succeeded, "q.a.succeeded"))
        #expect(TaskTracker.matchesKey(TaskEvent(kind: .queued, task: task), "~track.q.a.queued"))
    }

    @Test("changes from events: stages order attempts, then queued < running < retrying < final; progress counts as running")
    func stages() throws {
        var task = TaskEnvelope(name: "n", queue: "q", arguments: [], track: true)
        func change(_ kind: TaskEvent.Kind, _ configure: (inout TaskEvent) -> Void = { _ in }) throws -> TaskTrackingChange {
            var e = TaskEvent(kind: kind, task: task)
            configure(&e)
            return try #require(TaskTrackingChange(e))
        }
        let queued = try change(.queued), started = try change(.started), retrying = try change(.retrying)
        let progress = try change(.progress) { $0.progress = 2 }
        #expect(queued.stage < started.stage && started.stage < retrying.stage && progress.stage == started.stage)
        #expect(progress.status == .running && progress.kind == .progress(1, message: nil), "clamped to 1")
        task.attempt = 2
        #expect(try change(.started).stage > retrying.stage)
        #expect(try change(.succeeded).stage == change(.dead).stage)
        #expect(TaskTrackingChange(TaskEvent(kind: .received, task: task)) == nil)
        #expect(TaskTrackingChange(TaskEvent(kind: .progress, task: task)) == nil, "a report without a fraction is not recorded")
    }
}
