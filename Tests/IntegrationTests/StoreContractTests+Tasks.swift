import Foundation
import SluiceCoordinator
import SluiceCore
import SluiceWorkflow
import Testing
import SluiceAPI

extension StoreContractTests {
    /// A tracked task's event, as a worker or producer sends it.
    func event(_ kind: TaskEvent.Kind, _ id: String = "t1", attempt: Int = 1, at seconds: Double) -> TaskEvent {
        var task = TaskEnvelope(id: id, name: "emails.send", queue: "emails", arguments: Array("{}".utf8), attempt: attempt, track: true)
        task.track = true
        var e = TaskEvent(kind: kind, task: task, at: t0.addingTimeInterval(seconds), worker: kind == .queued ? nil : "host:1")
        switch kind {
        case .retrying:
            e.errorType = "timeout"
            e.errorMessage = "smtp timed out"
            e.nextDelayMilliseconds = 2000
            e.durationMilliseconds = 500
        case .succeeded:
            e.result = #"{"sent":true}"#
            e.durationMilliseconds = 250
        case .dead:
            e.deadReason = .maxAttempts
            e.errorType = "timeout"
            e.errorMessage = "still down"
        default: break
        }
        return e
    }

    func apply(_ store: any WorkflowStore, _ events: [TaskEvent]) async throws {
        try await store.recordTaskChanges(events.compactMap(TaskTrackingChange.init))
    }

    @Test("tracked tasks: statuses move forward through retries; late, repeated and out-of-order events change nothing", arguments: StoreKind.allCases)
    func trackedTasks(kind: StoreKind) async throws {
        let (store, _) = try await kind.make()
        #expect(try await store.trackedTask(id: "t1") == nil)
        try await apply(store, [event(.queued, at: 0)])
        var t = try #require(try await store.trackedTask(id: "t1"))
        #expect(t.status == .queued && t.attempt == 1 && t.name == "emails.send" && t.queue == "emails")
        #expect(t.enqueuedAt == t0 && t.startedAt == nil)

        try await apply(store, [event(.started, at: 1), event(.retrying, at: 1.5)])
        t = try #require(try await store.trackedTask(id: "t1"))
        #expect(t.status == .retrying && t.attempt == 1 && t.errorMessage == "smtp timed out" && t.errorType == "timeout")
        #expect(t.nextAttemptAt == t0.addingTimeInterval(3.5) && t.startedAt == t0.addingTimeInterval(1) && t.worker == "host:1")

        // The first attempt's start delivered again, late: ignored.
        try await apply(store, [event(.started, at: 1)])
        #expect(try await store.trackedTask(id: "t1")?.status == .retrying)

        try await apply(store, [event(.started, attempt: 2, at: 4)])
        try await store.recordTaskChanges([try #require(TaskTrackingChange({ var e = event(.progress, attempt: 2, at: 4.5)
            e.progress = 0.25
            e.progressMessage = "a quarter"
            return e }()))])
        t = try #require(try await store.trackedTask(id: "t1"))
        #expect(t.status == .running && t.attempt == 2 && t.startedAt == t0.addingTimeInterval(4) && t.nextAttemptAt == nil)
        #expect(t.errorMessage == "smtp timed out", "the last error stays while the next attempt runs")
        #expect(t.progress == 0.25 && t.progressMessage == "a quarter")
        // An older progress report does not overwrite a newer one.
        try await store.recordTaskChanges([try #require(TaskTrackingChange({ var e = event(.progress, attempt: 2, at: 4.2)
            e.progress = 0.1
            return e }()))])
        #expect(try await store.trackedTask(id: "t1")?.progress == 0.25)

        try await apply(store, [event(.succeeded, attempt: 2, at: 5)])
        t = try #require(try await store.trackedTask(id: "t1"))
        #expect(t.status == .succeeded && t.attempt == 2 && t.finishedAt == t0.addingTimeInterval(5) && t.result == ["sent": true])
        #expect(t.enqueuedAt == t0)
        // Everything again, and the retry of attempt 1: still succeeded.
        try await apply(store, [event(.retrying, at: 1.5), event(.started, attempt: 2, at: 4), event(.queued, at: 0)])
        #expect(try await store.trackedTask(id: "t1")?.status == .succeeded)
        // Progress of a finished attempt is not applied.
        try await store.recordTaskChanges([try #require(TaskTrackingChange({ var e = event(.progress, attempt: 2, at: 6)
            e.progress = 0.9
            return e }()))])
        #expect(try await store.trackedTask(id: "t1")?.progress == 0.25)

        // A worker's start that overtook the producer's `queued`: the enqueue time still fills in.
        try await apply(store, [event(.started, "t2", at: 2), event(.queued, "t2", at: 1)])
        t = try #require(try await store.trackedTask(id: "t2"))
        #expect(t.status == .running && t.enqueuedAt == t0.addingTimeInterval(1))
        // A success that overtook its start: the start comes from its duration.
        try await apply(store, [event(.succeeded, "t3", at: 10)])
        t = try #require(try await store.trackedTask(id: "t3"))
        #expect(t.status == .succeeded && t.startedAt == t0.addingTimeInterval(9.75))
        try await apply(store, [event(.dead, "t4", attempt: 3, at: 20)])
        t = try #require(try await store.trackedTask(id: "t4"))
        #expect(t.status == .dead && t.deadReason == "max_attempts" && t.errorMessage == "still down" && t.attempt == 3)

        // Replayed from its dead queue (same attempt), it succeeds: the newer final status wins.
        try await apply(store, [event(.succeeded, "t4", attempt: 3, at: 25)])
        t = try #require(try await store.trackedTask(id: "t4"))
        #expect(t.status == .succeeded && t.result == ["sent": true] && t.finishedAt == t0.addingTimeInterval(25), "\(t)")
        // A producer's queued event never resets a record, whatever attempt it names.
        var forged = event(.queued, "t4", attempt: 7, at: 26)
        try await apply(store, [forged])
        #expect(try await store.trackedTask(id: "t4")?.status == .succeeded)
        forged.attempt = Int.max
        #expect(TaskTrackingChange(forged) == nil, "an attempt no worker reports")

        // A progress report that overtook its start: the attempt runs, with that progress.
        try await store.recordTaskChanges([try #require(TaskTrackingChange({ var e = event(.progress, "t5", at: 30)
            e.progress = 0.3
            return e }()))])
        try await apply(store, [event(.started, "t5", at: 29)])
        t = try #require(try await store.trackedTask(id: "t5"))
        #expect(t.status == .running && t.progress == 0.3 && t.name == "emails.send", "\(t)")
        #expect(t.startedAt == t0.addingTimeInterval(29), "the late start still fills in")

        // Retention: finished ones by their last change; unfinished ones by a longer bound.
        let pruned = try await store.pruneTrackedTasks(finishedBefore: t0.addingTimeInterval(15), unfinishedBefore: t0, limit: 100)
        #expect(pruned == 2, "t1 and t3 finished before 15 s; t2 runs, t4 finished later")
        #expect(try await store.trackedTask(id: "t1") == nil)
        #expect(try await store.trackedTask(id: "t2") != nil)
        #expect(try await store.pruneTrackedTasks(finishedBefore: t0, unfinishedBefore: t0.addingTimeInterval(3), limit: 100) == 1,
                "t2, not t5 (later news)")
        #expect(try await store.trackedTask(id: "t2") == nil)
        #expect(try await store.trackedTask(id: "t4") != nil)
        try await store.close()
    }
}
