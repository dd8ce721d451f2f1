import Foundation
import Logging
import ServiceLifecycle
@testable import SluiceCoordinator
import SluiceCore
import SluiceTesting
import SluiceWorker
import SluiceWorkflow
import Synchronization
import Testing
import SluiceAPI

/// A store that can be switched "away": every call fails as a database in
/// failover would, until it is switched back. It can also fail the next
/// few commits that delete published outbox rows.
final class SwitchableStore: WorkflowStore {
    struct Away: Error, CustomStringConvertible {
        var description: String { "the store is away (test)" }
    }

    let base: any WorkflowStore
    private let away = Mutex(false)
    private let deletionFailures = Mutex((left: 0, failed: 0))

    init(_ base: any WorkflowStore) { self.base = base }

    func setAway(_ value: Bool) { away.withLock { $0 = value } }

    private let outboxReadDelay = Mutex(Duration.zero)

    /// Makes every outbox read take at least `delay` (a slow store).
    func delayOutboxReads(_ delay: Duration) { outboxReadDelay.withLock { $0 = delay } }

    /// Fails the next `count` commits that delete published outbox rows.
    func failDeletions(_ count: Int) { deletionFailures.withLock { $0.left = count } }

    /// How many commits that delete outbox rows failed so.
    var deletionsFailed: Int { deletionFailures.withLock { $0.failed } }

    private func reachable() throws {
        if away.withLock({ $0 }) { throw Away() }
    }

    func migrate() async throws { try reachable(); try await base.migrate() }
    func saveDefinition(_ definition: WorkflowDefinition) async throws { try reachable(); try await base.saveDefinition(definition) }
    func definition(name: String, version: Int?) async throws -> WorkflowDefinition? {
        try reachable(); return try await base.definition(name: name, version: version)
    }
    func latestDefinitionVersion(name: String) async throws -> Int? { try reachable(); return try await base.latestDefinitionVersion(name: name) }
    func definitionSummaries(after cursor: String?, limit: Int) async throws -> [DefinitionSummary] {
        try reachable(); return try await base.definitionSummaries(after: cursor, limit: limit)
    }
    func deleteDefinition(name: String, version: Int) async throws -> DefinitionDeletion {
        try reachable(); return try await base.deleteDefinition(name: name, version: version)
    }
    func run(id: String) async throws -> RunState? { try reachable(); return try await base.run(id: id) }
    func run(idempotencyKey: String) async throws -> RunState? { try reachable(); return try await base.run(idempotencyKey: idempotencyKey) }
    func runs(_ query: RunQuery) async throws -> RunPage { try reachable(); return try await base.runs(query) }
    func activeRunIDs() async throws -> [String] { try reachable(); return try await base.activeRunIDs() }
    func runStatus(id: String) async throws -> RunState.Status? { try reachable(); return try await base.runStatus(id: id) }
    func commit(_ changes: [RunChange], messages: [RunMessage], sent: [Int64]) async throws -> [Int64] {
        try reachable()
        let fail = !sent.isEmpty && deletionFailures.withLock { d in
            guard d.left > 0 else { return false }
            d.left -= 1
            d.failed += 1
            return true
        }
        if fail { throw Away() }
        return try await base.commit(changes, messages: messages, sent: sent)
    }
    func unsentOutboxRows(limit: Int, after: Int64) async throws -> [OutboxRow] {
        try reachable()
        let delay = outboxReadDelay.withLock { $0 }
        if delay > .zero { try await Task.sleep(for: delay) }
        return try await base.unsentOutboxRows(limit: limit, after: after)
    }
    func statistics() async throws -> StoreStatistics { try reachable(); return try await base.statistics() }
    func pruneRuns(finishedBefore before: Date, limit: Int) async throws -> [String] {
        try reachable(); return try await base.pruneRuns(finishedBefore: before, limit: limit)
    }
    func dueTimers(now: Date, limit: Int) async throws -> [TimerEntry] { try reachable(); return try await base.dueTimers(now: now, limit: limit) }
    func nextTimerDue() async throws -> Date? { try reachable(); return try await base.nextTimerDue() }
    func saveSchedule(_ schedule: ScheduleRecord) async throws { try reachable(); try await base.saveSchedule(schedule) }
    func schedules() async throws -> [ScheduleRecord] { try reachable(); return try await base.schedules() }
    func removeSchedule(id: String) async throws -> Bool { try reachable(); return try await base.removeSchedule(id: id) }
    func replaceSchedule(_ schedule: ScheduleRecord, ifSpec expected: String) async throws -> Bool {
        try reachable()
        return try await base.replaceSchedule(schedule, ifSpec: expected)
    }
    func fireSchedule(id: String, expected: Date, next: Date, changes: [RunChange], publish: [StepTask]) async throws -> Bool {
        try reachable(); return try await base.fireSchedule(id: id, expected: expected, next: next, changes: changes, publish: publish)
    }
    func acquireLease(_ name: String, holder: String, now: Date, ttl: Duration) async throws -> Bool {
        try reachable(); return try await base.acquireLease(name, holder: holder, now: now, ttl: ttl)
    }
    func renewLease(_ name: String, holder: String, now: Date, ttl: Duration) async throws -> Bool {
        try reachable(); return try await base.renewLease(name, holder: holder, now: now, ttl: ttl)
    }
    func releaseLease(_ name: String, holder: String) async throws { try reachable(); try await base.releaseLease(name, holder: holder) }
    func leases(prefix: String, now: Date) async throws -> [String: String] { try reachable(); return try await base.leases(prefix: prefix, now: now) }
    func partitionCount(proposed: Int) async throws -> Int { try reachable(); return try await base.partitionCount(proposed: proposed) }
    func setFence(_ fence: StoreFence?) { base.setFence(fence) }
    func recordTaskChanges(_ changes: [TaskTrackingChange]) async throws { try reachable(); try await base.recordTaskChanges(changes) }
    func trackedTask(id: String) async throws -> TrackedTask? { try reachable(); return try await base.trackedTask(id: id) }
    func pruneTrackedTasks(finishedBefore: Date, unfinishedBefore: Date, limit: Int) async throws -> Int {
        try reachable()
        return try await base.pruneTrackedTasks(finishedBefore: finishedBefore, unfinishedBefore: unfinishedBefore, limit: limit)
    }
    func close() async throws { try await base.close() }
}

@Suite("The coordinator rides out a store that is away (in-memory broker)")
struct CoordinatorResilienceTests {
    /// Polls `condition` every 20 ms; fails with `what` after `seconds`.
    func eventually(_ what: String, seconds: Double = 30, _ condition: () async throws -> Bool) async throws {
        let deadline = TestTime.deadline(seconds)
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TimedOut(what: what, seconds: TestTime.scaled(seconds))
    }

    /// Runs `body`, again while it fails only because the coordinator stood by
    /// for a moment: with a 2 s lease, a machine loaded by the parallel suite
    /// can miss a renewal (seen twice in CI). A fenced commit wrote nothing,
    /// so trying again is safe.
    func whileLeading<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        let deadline = TestTime.deadline(60)
        while true {
            do {
                return try await body()
            } catch where Coordinator.isLeaseLoss(error) {
                if ContinuousClock.now >= deadline { throw TimedOut(what: what, seconds: TestTime.scaled(60)) }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    @Test("a call that ignores cancellation is given up on time, and at once when its caller is cancelled")
    func abandonable() async throws {
        // Work deaf to cancellation, as a driver stuck on a dead connection is.
        let release = OneShotSignal()
        defer { release.fire() }
        let deaf: @Sendable () async throws -> Int = {
            await release.wait()
            return 1
        }
        // Returning at all shows it did not wait: the work ends only when this test does.
        let timedOut = await Abandonable.run(.milliseconds(200), deaf)
        guard case .timedOut = timedOut else { Issue.record("expected a time-out, got \(timedOut)"); return }

        let caller = Task { await Abandonable.run(.seconds(3600), deaf) }
        caller.cancel()
        guard case .cancelled = await caller.value else { Issue.record("expected cancelled"); return }

        guard case .finished(.success(let value)) = await Abandonable.run(.seconds(3600), { 7 }) else {
            Issue.record("expected the result"); return
        }
        #expect(value == 7)
        guard case .finished(.failure(let error)) = await Abandonable.run(.seconds(3600), { () async throws -> Int in throw CoordinatorEnded("boom") }) else {
            Issue.record("expected the error"); return
        }
        #expect("\(error)" == "boom")
    }

    @Test("loop restarts back off from 0.5 s, doubling, up to 30 s")
    func restartDelays() {
        #expect((0..<8).map { Coordinator.restartDelay(afterFailures: $0) }
                == [.milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(30), .seconds(30)])
        #expect(Coordinator.restartDelay(afterFailures: 1000) == .seconds(30))
    }

    @Test("a store away for longer than the lease: the coordinator stands by instead of exiting, then leads and finishes the run")
    func storeAway() async throws {
        var logger = Logger(label: "test.resilience")
        logger.logLevel = .critical
        let broker = InMemoryBroker(topology: try Topology(prefix: "res"))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-res-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let sqlite = try await SQLiteWorkflowStore.open(path: path)
        try await sqlite.migrate()
        let store = SwitchableStore(sqlite)
        let engine = RunEngine(store: store, logger: logger)
        let coordinator = Coordinator(broker: broker, engine: engine,
                                      configuration: .init(leaseTTL: .seconds(2), defaultQueue: "wf", pollInterval: .milliseconds(50)),
                                      logger: logger)

        let gateStarted = OneShotSignal(), gateOpen = OneShotSignal()
        var registry = HandlerRegistry()
        registry.register("gate") { _ in
            gateStarted.fire()
            await gateOpen.wait()
            return Array(#"{"passed": true}"#.utf8)
        }
        registry.register("echo") { context in context.arguments }
        let worker = Worker(broker: broker, registry: registry,
                            configuration: .init(queues: ["wf"], concurrency: 2, publishStartedEvents: false), logger: logger)

        let ended = Mutex<String?>(nil)
        let group = ServiceGroup(configuration: .init(services: [coordinator, worker], logger: logger))
        let running = Task {
            do {
                try await group.run()
                ended.withLock { $0 = "the service group ended" }
            } catch {
                ended.withLock { $0 = "the service group failed: \(error)" }
            }
        }
        do {
            try await eventually("the coordinator to lead") { coordinator.isActive }
            try await whileLeading("the workflow to be registered") {
                try await engine.register(WorkflowDefinition(name: "gated") {
                    WorkflowStep.task("gate", "gate")
                    WorkflowStep.task("after", "echo", after: ["gate"], arguments: ["gate": "${steps.gate.output.passed}"])
                })
            }
            let run = try await whileLeading("the run to start") { try await engine.start(workflow: "gated", input: [:]) }
            try await eventually("the gate step to start") { gateStarted.isFired }

            // The database goes away while a step is running; its result comes back meanwhile.
            store.setAway(true)
            gateOpen.fire()
            // After a lease TTL without renewal the coordinator cannot know it still leads: it stands by.
            try await eventually("the coordinator to stand by while the store is away") {
                if let reason = ended.withLock({ $0 }) { throw CoordinatorEnded(reason) }
                return !coordinator.isActive
            }
            #expect(ended.withLock { $0 } == nil, "the coordinator is still running")

            store.setAway(false)
            try await eventually("the run to complete once the store is back") {
                if let reason = ended.withLock({ $0 }) { throw CoordinatorEnded(reason) }
                // A read waiting on a commit gets that commit's error: with a 2 s
                // lease a loaded machine may stand by once more (seen in CI). Not yet done.
                do { return try await engine.run(run.runID)?.status == .completed } catch where Coordinator.isLeaseLoss(error) { return false }
            }
            let done = try await whileLeading("the run to be read") { try await engine.run(run.runID) }
            #expect(done?.steps["after"]?.output == ["gate": true], "the step's result survived the outage")
            // Awaited, not read once: with a 2 s lease a loaded machine may see one more stand-by before it settles.
            try await eventually("the coordinator to lead again") {
                if let reason = ended.withLock({ $0 }) { throw CoordinatorEnded(reason) }
                return coordinator.isActive
            }
            #expect(ended.withLock { $0 } == nil)
        } catch {
            store.setAway(false)
            gateOpen.fire()
            await group.triggerGracefulShutdown()
            await running.value
            try? await sqlite.close()
            throw error
        }
        await group.triggerGracefulShutdown()
        await running.value
        try await sqlite.close()
    }
}

