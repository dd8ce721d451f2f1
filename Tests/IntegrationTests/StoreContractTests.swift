import Foundation
import SluiceCoordinator
import SluiceWorkflow
import SluiceCore
import Testing
import SluiceAPI
import SluiceTesting

/// The stores the contract runs against. Each test gets a fresh, empty store.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { rawValue }

    /// The `--store` of a coordinator process on a new, empty store of this kind.
    func coordinatorStore() async throws -> String {
        switch self {
        case .sqlite: "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        case .postgres: try await SharedPostgres.createDatabase()
        }
    }

    /// A new empty store, and a way to open it again (as after a restart).
    func make() async throws -> (store: any WorkflowStore, reopen: @Sendable () async throws -> any WorkflowStore) {
        switch self {
        case .sqlite:
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-store-\(UUID().uuidString).sqlite").path
            let store = try await SQLiteWorkflowStore.open(path: path)
            return (store, { try await SQLiteWorkflowStore.open(path: path) })
        case .postgres:
            let database = try await SharedPostgres.createDatabase()
            // The store's 15 s call limit, scaled like every other bound: the
            // slot race queues commits on one advisory lock, and a loaded
            // machine running the whole suite took longer than 15 s twice.
            let limit = Duration.seconds(TestTime.scaled(15))
            let store = try await PostgresWorkflowStore.connect(url: database, callTimeout: limit)
            return (store, { try await PostgresWorkflowStore.connect(url: database, callTimeout: limit) })
        }
    }
}

/// One suite, both stores: what the coordinator relies on.
@Suite("WorkflowStore contract (SQLite and PostgreSQL)")
struct StoreContractTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func definition(_ name: String = "orders", version: Int = 1, task: String = "t") -> WorkflowDefinition {
        WorkflowDefinition(name: name, version: version) { WorkflowStep.task("a", task) }
    }

    func newRun(_ id: String, workflow: String = "orders", status: RunState.Status = .running, createdAt: Date) -> RunState {
        var run = RunState(runID: id, workflow: workflow, version: 1, input: ["id": .string(id)], steps: ["a": StepState()], createdAt: createdAt)
        run.status = status
        return run
    }

    func task(_ run: String, _ step: String) -> StepTask {
        StepTask(taskID: "\(run)/\(step)/0", name: "t", queue: "q", arguments: ["x": 1], maxAttempts: 3, retry: nil,
                 runID: run, stepID: step, index: nil)
    }

    @Test("migrations are numbered and safe to run again", arguments: StoreKind.allCases)
    func migrations(kind: StoreKind) async throws {
        let (store, reopen) = try await kind.make()
        try await store.migrate()
        try await store.migrate()
        try await store.close()
        let again = try await reopen()
        #expect(try await again.definitionSummaries(after: nil, limit: 10).isEmpty)
        try await again.close()
    }

    @Test("definitions: versions, the newest by default, same content again is fine, other content conflicts", arguments: StoreKind.allCases)
    func definitions(kind: StoreKind) async throws {
        let (store, _) = try await kind.make()
        try await store.saveDefinition(definition(version: 1))
        try await store.saveDefinition(definition(version: 2, task: "t2"))
        try await store.saveDefinition(definition(version: 1))
        try await store.saveDefinition(definition("billing"))
        #expect(try await store.definition(name: "orders", version: nil) == definition(version: 2, task: "t2"))
        #expect(try await store.definition(name: "orders", version: 1) == definition(version: 1))
        #expect(try await store.definition(name: "nope", version: nil) == nil)
        #expect(try await store.definitionSummaries(after: nil, limit: 10).map { "\($0.name)@\($0.version)" } == ["billing@1", "orders@1", "orders@2"])
        // Pages: names and versions only, continued from a cursor.
        let first = try await store.definitionSummaries(after: nil, limit: 2)
        #expect(first.map(\.cursor) == ["1:billing", "1:orders"])
        #expect(first.allSatisfy { $0.bytes > 0 })
        #expect(try await store.definitionSummaries(after: first[1].cursor, limit: 2).map { "\($0.name)@\($0.version)" } == ["orders@2"])
        await #expect(throws: StoreError.self) { try await store.saveDefinition(definition(version: 1, task: "changed")) }
        try await store.close()
    }

    @Test("deleting a definition: refused while a run that may need it exists, then done once", arguments: StoreKind.allCases)
    func deleteDefinition(kind: StoreKind) async throws {
        let (store, _) = try await kind.make()
        try await store.saveDefinition(definition(version: 1))
        try await store.saveDefinition(definition(version: 2, task: "t2"))
        var failed = newRun("d1", createdAt: t0)
        failed.status = .failed
        try await store.commit([RunChange(run: failed, isNew: true)])
        #expect(try await store.deleteDefinition(name: "orders", version: 1) == .inUse(runs: 1), "a failed run can be retried")
        #expect(try await store.deleteDefinition(name: "orders", version: 2) == .deleted)
        #expect(try await store.deleteDefinition(name: "orders", version: 2) == .notFound)
        failed.status = .cancelled
        try await store.commit([RunChange(run: failed)])
        #expect(try await store.deleteDefinition(name: "orders", version: 1) == .deleted)
        #expect(try await store.definition(name: "orders", version: nil) == nil)
        try await store.close()
    }

    @Test("runs: insert with an idempotency key, update, conflicts, and all-or-nothing commits", arguments: StoreKind.allCases)
    func runs(kind: StoreKind) async throws {
        let (store, reopen) = try await kind.make()
        var run = newRun("r1", createdAt: t0)
        try await store.commit([RunChange(run: run, isNew: true, idempotencyKey: "key-1")])
        #expect(try await store.run(id: "r1") == run)
        #expect(try await store.run(idempotencyKey: "key-1")?.runID == "r1")
        #expect(try await store.run(id: "r2") == nil)

        run.status = .completed
        run.output = ["done": true]
        try await store.commit([RunChange(run: run)])
        #expect(try await store.run(id: "r1")?.output == ["done": true])
        #expect(try await store.runStatus(id: "r1") == .completed)
        #expect(try await store.runStatus(id: "r2") == nil)

        // Taken ids and keys are conflicts (the engine relies on the code to resolve racing starts).
        for taken in [RunChange(run: newRun("r1", createdAt: t0), isNew: true),
                      RunChange(run: newRun("r9", createdAt: t0), isNew: true, idempotencyKey: "key-1")] {
            do {
                try await store.commit([taken])
                Issue.record("a taken id or key was accepted")
            } catch let error as StoreError {
                #expect(error.code == .conflict, "\(error)")
            }
        }
        // The second change fails (no such run), so the first is not kept either.
        await #expect(throws: StoreError.self) {
            try await store.commit([RunChange(run: newRun("r3", createdAt: t0), isNew: true, publish: [task("r3", "a")]),
                                    RunChange(run: newRun("missing", createdAt: t0))])
        }
        #expect(try await store.run(id: "r3") == nil)
        #expect(try await store.unsentOutbox(limit: 10).isEmpty)
        try await store.close()
        let again = try await reopen()
        #expect(try await again.run(id: "r1") == run, "committed state survives a reopen")
        try await again.close()
    }

    @Test("map elements are rows: only changed ones written, replaced ones cleared, a settled map's output gathered", arguments: StoreKind.allCases)
    func elementRows(kind: StoreKind) async throws {
        let (store, reopen) = try await kind.make()
        var run = newRun("m1", createdAt: t0)
        var map = StepState()
        map.status = .running
        map.elements = Array(repeating: ElementState(), count: 4)
        map.elements![0].status = .running
        run.steps["each"] = map
        try await store.commit([RunChange(run: run, isNew: true, elements: ElementChanges(
            replaced: ["each"], elements: [ElementRow(step: "each", index: 0, element: run.steps["each"]!.elements![0])]))])
        #expect(try await store.run(id: "m1") == run)

        // One element settles: only its row is written; the others keep theirs.
        run.steps["each"]!.elements![0].status = .succeeded
        run.steps["each"]!.elements![0].output = ["v": 0]
        run.steps["each"]!.elements![0].attempts = 2
        run.steps["each"]!.elements![3].status = .failed
        run.steps["each"]!.elements![3].error = "boom"
        try await store.commit([RunChange(run: run, elements: ElementChanges(elements: [
            ElementRow(step: "each", index: 0, element: run.steps["each"]!.elements![0]),
            ElementRow(step: "each", index: 3, element: run.steps["each"]!.elements![3])]))])
        #expect(try await store.run(id: "m1") == run)

        // The map settles: its output is not stored with the run but gathered from the rows.
        run.steps["each"]!.status = .failed
        run.steps["each"]!.output = StepState.mapOutput(run.steps["each"]!.elements!)
        try await store.commit([RunChange(run: run)])
        #expect(try await store.run(id: "m1")?.steps["each"]?.output == [["v": 0], nil, nil, nil])

        // Retried wholesale: the old rows go, and elements without a row read as waiting.
        run.steps["each"]!.status = .running
        run.steps["each"]!.output = nil
        run.steps["each"]!.elements = Array(repeating: ElementState(), count: 2)
        try await store.commit([RunChange(run: run, elements: ElementChanges(replaced: ["each"]))])
        try await store.close()
        let again = try await reopen()
        #expect(try await again.run(id: "m1") == run)
        try await again.close()
    }

    @Test("a commit returns its outbox rows' ids in order and deletes the rows it is told were sent", arguments: StoreKind.allCases)
    func commitOutboxIDs(kind: StoreKind) async throws {
        let (store, _) = try await kind.make()
        let ids = try await store.commit([RunChange(run: newRun("o1", createdAt: t0), isNew: true, publish: [task("o1", "a"), task("o1", "b")]),
                                          RunChange(run: newRun("o2", createdAt: t0), isNew: true, publish: [task("o2", "a")])])
        #expect(ids.count == 3 && ids == ids.sorted() && Set(ids).count == 3)
        let unsent = try await store.unsentOutbox(limit: 10)
        #expect(unsent.map(\.id) == ids)
        #expect(unsent.map { $0.task?.taskID } == ["o1/a/0", "o1/b/0", "o2/a/0"])
        let more = try await store.commit([RunChange(run: newRun("o3", createdAt: t0), isNew: true, publish: [task("o3", "a")])],
                                          sent: Array(ids.prefix(2)))
        #expect(more.count == 1 && more[0] > ids[2])
        #expect(try await store.unsentOutbox(limit: 10).map(\.id) == [ids[2], more[0]])
        // Paged: rows after an id (the relay reads on past rows it published already).
        #expect(try await store.unsentOutbox(limit: 10, after: ids[2]).map(\.id) == [more[0]])
        #expect(try await store.unsentOutbox(limit: 1, after: ids[0]).map(\.id) == [ids[2]])
        #expect(try await store.unsentOutbox(limit: 10, after: more[0]).isEmpty)
        try await store.close()
    }

    @Test("partitions: a new store takes the count first proposed and keeps it; a fence with buckets reads only their rows; leases list by prefix",
          arguments: StoreKind.allCases)
    func partitions(kind: StoreKind) async throws {
        let (store, _) = try await kind.make()
        #expect(try await store.partitionCount(proposed: 4) == 4)
        #expect(try await store.partitionCount(proposed: 16) == 4)
        let ids = ["pa", "pb", "pc", "pd", "pe", "pf", "pg"]
        for id in ids {
            var change = RunChange(run: newRun(id, createdAt: t0), isNew: true, publish: [task(id, "a")])
            change.addTimers = [TimerEntry(id: "\(id)/t", runID: id, dueAt: t0)]
            try await store.commit([change])
        }
        let partition = Topology.partition(runID: "pa", of: 4)
        let mine = ids.filter { Topology.partition(runID: $0, of: 4) == partition }
        #expect(try await store.acquireLease("coordinator:x:p\(partition)", holder: "a", now: t0, ttl: .seconds(3600)))
        let buckets = Topology.buckets(ofPartition: partition, of: 4)
        store.setFence(StoreFence(leases: ["coordinator:x:p\(partition)": "a"], buckets: Set(buckets),
                                  leaseOfBucket: Dictionary(uniqueKeysWithValues: buckets.map { ($0, "coordinator:x:p\(partition)") })))
        #expect(Set(try await store.unsentOutbox(limit: 100).compactMap { $0.task?.runID }) == Set(mine))
        #expect(Set(try await store.dueTimers(now: t0, limit: 100).map(\.runID)) == Set(mine))
        // Another holder takes the lease: fenced writes fail.
        #expect(try await store.acquireLease("coordinators:x:a", holder: "a", now: t0, ttl: .seconds(3600)))
        #expect(try await store.acquireLease("coordinators:x:b", holder: "b", now: t0, ttl: .seconds(1)))
        #expect(try await store.leases(prefix: "coordinators:x:", now: t0 + 2) == ["coordinators:x:a": "a"])
        try await store.releaseLease("coordinator:x:p\(partition)", holder: "a")
        #expect(try await store.acquireLease("coordinator:x:p\(partition)", holder: "b", now: t0, ttl: .seconds(3600)))
        // Another holder took the lease: changing a run of the partition fails;
        // a new run needs no lease (nobody else can hold it yet).
        let pa = try #require(try await store.run(id: "pa"))
        await #expect(throws: StoreError.self) { try await store.commit([RunChange(run: pa)]) }
        try await store.commit([RunChange(run: newRun("ph", createdAt: t0), isNew: true)])
        // A run of a partition not led is refused outright.
        if let other = ids.first(where: { !mine.contains($0) }), let run = try await store.run(id: other) {
            await #expect(throws: StoreError.self) { try await store.commit([RunChange(run: run)]) }
        }
        store.setFence(nil)
        #expect(try await store.unsentOutbox(limit: 100).count == ids.count)
        #expect(try await store.run(id: "ph") != nil)
        try await store.close()
    }

    @Test("the outbox keeps publish order until its rows are deleted as sent, across reopening", arguments: StoreKind.allCases)
    func outbox(kind: StoreKind) async throws {
        let (store, reopen) = try await kind.make()
        try await store.commit([RunChange(run: newRun("r1", createdAt: t0), isNew: true, publish: [task("r1", "a"), task("r1", "b")])])
        try await store.commit([RunChange(run: newRun("r2", createdAt: t0), isNew: true, publish: [task("r2", "a")])])
        let unsent = try await store.unsentOutbox(limit: 10)
        #expect(unsent.map { $0.task?.taskID } == ["r1/a/0", "r1/b/0", "r2/a/0"])
        #expect(unsent[0].task == task("r1", "a"))
        #expect(unsent.map(\.id) == unsent.map(\.id).sorted())
        try await store.commit([], sent: [unsent[0].id, unsent[2].id])
        try await store.close()
        let again = try await reopen()
        #expect(try await again.unsentOutbox(limit: 10).map { $0.task?.taskID } == ["r1/b/0"])
        #expect(try await again.unsentOutbox(limit: 0).isEmpty)
        try await again.close()
    }

    @Test("pruning deletes finished runs past the cutoff with their timers, children only after their parent", arguments: StoreKind.allCases)
    func pruning(kind: StoreKind) async throws {
        let (store, _) = try await kind.make()
        var changes: [RunChange] = []
        for (id, status) in [("done", RunState.Status.completed), ("failed", .failed), ("cancelled", .cancelled),
                             ("running", .running), ("paused", .paused), ("pending", .pending)] {
            changes.append(RunChange(run: newRun(id, status: status, createdAt: t0), isNew: true,
                                     addTimers: [TimerEntry(id: "timer-\(id)", runID: id, dueAt: t0 + 60)]))
        }
        // A finished child of a running parent stays; a finished child of a finished parent goes.
        var child = newRun("child-of-running", status: .completed, createdAt: t0)
        child.parent = RunState.ParentLink(runID: "running", childKey: "running/sub/0")
        var other = newRun("child-of-done", status: .completed, createdAt: t0)
        other.parent = RunState.ParentLink(runID: "done", childKey: "done/sub/0")
        changes += [RunChange(run: child, isNew: true), RunChange(run: other, isNew: true)]
        try await store.commit(changes)

        #expect(try await store.pruneRuns(finishedBefore: Date() - 3600, limit: 100).isEmpty, "nothing is that old")
        let first = try await store.pruneRuns(finishedBefore: Date() + 3600, limit: 2)
        #expect(first.count == 2, "the limit holds")
        let rest = try await store.pruneRuns(finishedBefore: Date() + 3600, limit: 100)
        #expect(Set(first + rest) == ["done", "failed", "cancelled", "child-of-done"])
        for id in ["done", "failed", "cancelled", "child-of-done"] { #expect(try await store.run(id: id) == nil) }
        for id in ["running", "paused", "pending", "child-of-running"] { #expect(try await store.run(id: id) != nil) }
        #expect(try await Set(store.dueTimers(now: t0 + 100, limit: 10).map(\.id)) == ["timer-running", "timer-paused", "timer-pending"])

        // Fenced like a commit.
        #expect(try await store.acquireLease("coordinator", holder: "b", now: Date(), ttl: .seconds(60)))
        store.setFence(StoreFence(lease: "coordinator", holder: "a"))
        await #expect(throws: StoreError.self) { try await store.pruneRuns(finishedBefore: Date() + 3600, limit: 100) }
        store.setFence(nil)
        try await store.close()
    }

    @Test("timers: due ones in order, moved, removed", arguments: StoreKind.allCases)
    func timers(kind: StoreKind) async throws {
        let (store, _) = try await kind.make()
        let run = newRun("r1", createdAt: t0)
        try await store.commit([RunChange(run: run, isNew: true, addTimers: [
            TimerEntry(id: "late", runID: "r1", dueAt: t0 + 60),
            TimerEntry(id: "soon", runID: "r1", dueAt: t0 + 1),
            TimerEntry(id: "mid", runID: "r1", dueAt: t0 + 30),
        ])])
        #expect(try await store.nextTimerDue() == t0 + 1)
        #expect(try await store.dueTimers(now: t0 + 30, limit: 10).map(\.id) == ["soon", "mid"])
        #expect(try await store.dueTimers(now: t0, limit: 10).isEmpty)
        try await store.commit([RunChange(run: run, addTimers: [TimerEntry(id: "soon", runID: "r1", dueAt: t0 + 90)],
                                          removeTimers: ["mid"])])
        #expect(try await store.dueTimers(now: t0 + 100, limit: 10).map(\.id) == ["late", "soon"])
        #expect(try await store.dueTimers(now: t0 + 100, limit: 1).map(\.id) == ["late"])
        try await store.commit([RunChange(run: run, removeTimers: ["late", "soon"])])
        #expect(try await store.nextTimerDue() == nil)
        try await store.close()
    }

    @Test("listing runs: filters, newest first, stable pages", arguments: StoreKind.allCases)
    func listing(kind: StoreKind) async throws {
        let (store, _) = try await kind.make()
        var changes: [RunChange] = []
        for i in 0..<25 {
            let status: RunState.Status = i % 5 == 0 ? .failed : (i % 2 == 0 ? .completed : .running)
            changes.append(RunChange(run: newRun(String(format: "r%02d", i), workflow: i < 20 ? "orders" : "billing", status: status,
                                                 createdAt: t0 + Double(i / 2)), isNew: true))
        }
        try await store.commit(changes)
        var seen: [String] = []
        var cursor: String?
        repeat {
            let page = try await store.runs(RunQuery(limit: 7, cursor: cursor))
            #expect(page.runs.count <= 7)
            seen += page.runs.map(\.runID)
            cursor = page.nextCursor
        } while cursor != nil
        #expect(seen.count == 25)
        #expect(Set(seen).count == 25, "no run twice across pages")
        #expect(seen == seen.sorted { a, b in
            let ia = Int(a.dropFirst())!, ib = Int(b.dropFirst())!
            return ia / 2 != ib / 2 ? ia / 2 > ib / 2 : a > b
        })
        #expect(try await store.runs(RunQuery(workflow: "billing")).runs.count == 5)
        #expect(try await store.runs(RunQuery(status: .failed)).runs.map(\.runID) == ["r20", "r15", "r10", "r05", "r00"])
        #expect(try await store.runs(RunQuery(workflow: "orders", status: .running, createdAfter: t0 + 5, createdBefore: t0 + 8))
            .runs.map(\.runID) == ["r13", "r11"])
        #expect(Set(try await store.activeRunIDs()) == Set(changes.filter { $0.run.status == .running }.map(\.run.runID)))
        await #expect(throws: StoreError.self) { try await store.runs(RunQuery(cursor: "garbage")) }
        try await store.close()
    }

    @Test("a schedule fires once for a given time, with its changes in the same transaction", arguments: StoreKind.allCases)
    func schedules(kind: StoreKind) async throws {
        let (store, _) = try await kind.make()
        try await store.saveSchedule(ScheduleRecord(id: "nightly", spec: #"{"cron":"0 3 * * *"}"#, nextFireAt: t0))
        try await store.saveSchedule(ScheduleRecord(id: "hourly", spec: "{}", nextFireAt: t0 + 10))
        #expect(try await store.schedules().map(\.id) == ["hourly", "nightly"])
        let change = RunChange(run: newRun("cron-1", createdAt: t0), isNew: true, publish: [task("cron-1", "a")])
        let standalone = StepTask(taskID: "nightly@1", name: "report", queue: "q", arguments: [:], maxAttempts: nil, retry: nil,
                                  runID: "", stepID: "", index: nil)
        #expect(try await store.fireSchedule(id: "nightly", expected: t0, next: t0 + 86400, changes: [change], publish: [standalone]))
        // A second coordinator (or a restart) trying the same fire loses, and its changes are not applied.
        let duplicate = RunChange(run: newRun("cron-2", createdAt: t0), isNew: true)
        #expect(try await !store.fireSchedule(id: "nightly", expected: t0, next: t0 + 86400, changes: [duplicate], publish: [standalone]))
        #expect(try await store.run(id: "cron-1") != nil)
        #expect(try await store.run(id: "cron-2") == nil)
        #expect(try await store.unsentOutbox(limit: 10).map { $0.task?.taskID } == ["cron-1/a/0", "nightly@1"])
        #expect(try await store.schedules().first { $0.id == "nightly" }?.nextFireAt == t0 + 86400)
        // A conditional replace (pause, resume) applies only over the definition it read.
        #expect(try await !store.replaceSchedule(ScheduleRecord(id: "hourly", spec: #"{"paused":true}"#, nextFireAt: t0 + 20), ifSpec: "{\"old\":1}"))
        #expect(try await store.replaceSchedule(ScheduleRecord(id: "hourly", spec: #"{"paused":true}"#, nextFireAt: t0 + 20), ifSpec: "{}"))
        let hourly = try await store.schedules().first { $0.id == "hourly" }
        #expect(hourly?.spec == #"{"paused":true}"#)
        #expect(hourly?.nextFireAt == t0 + 20)
        #expect(try await !store.replaceSchedule(ScheduleRecord(id: "gone", spec: "{}", nextFireAt: t0), ifSpec: "{}"), "no row is made")
        #expect(try await store.schedules().map(\.id) == ["hourly", "nightly"])
        #expect(try await store.removeSchedule(id: "nightly"))
        #expect(try await !store.removeSchedule(id: "nightly"))
        #expect(try await store.schedules().map(\.id) == ["hourly"])
        try await store.close()
    }

    @Test("a lease belongs to one holder until another takes it over after it expired", arguments: StoreKind.allCases)
    func leases(kind: StoreKind) async throws {
        let (store, _) = try await kind.make()
        #expect(try await store.acquireLease("coordinator", holder: "a", now: t0, ttl: .seconds(10)))
        #expect(try await store.renewLease("coordinator", holder: "a", now: t0 + 3, ttl: .seconds(10)))
        #expect(try await !store.renewLease("coordinator", holder: "b", now: t0 + 3, ttl: .seconds(10)), "only the holder renews")
        // A late renewal (a stall, a clock step) keeps a lease that nobody took over...
        #expect(try await store.renewLease("coordinator", holder: "a", now: t0 + 30, ttl: .seconds(10)), "late, not taken over")
        #expect(try await !store.acquireLease("coordinator", holder: "b", now: t0 + 35, ttl: .seconds(10)), "renewed until t0 + 40")
        // ...and fails once another holder has it.
        #expect(try await store.acquireLease("coordinator", holder: "b", now: t0 + 41, ttl: .seconds(10)))
        #expect(try await !store.renewLease("coordinator", holder: "a", now: t0 + 42, ttl: .seconds(10)), "taken over: not renewed")
        try await store.releaseLease("coordinator", holder: "b")
        #expect(try await store.acquireLease("coordinator", holder: "a", now: t0, ttl: .seconds(10)))
        #expect(try await !store.acquireLease("coordinator", holder: "b", now: t0 + 5, ttl: .seconds(10)))
        #expect(try await store.acquireLease("coordinator", holder: "a", now: t0 + 5, ttl: .seconds(10)), "renewal")
        #expect(try await !store.acquireLease("coordinator", holder: "b", now: t0 + 14, ttl: .seconds(10)))
        #expect(try await store.acquireLease("coordinator", holder: "b", now: t0 + 16, ttl: .seconds(10)), "expired: taken over")
        #expect(try await !store.acquireLease("coordinator", holder: "a", now: t0 + 17, ttl: .seconds(10)))
        try await store.releaseLease("coordinator", holder: "a")
        #expect(try await !store.acquireLease("coordinator", holder: "a", now: t0 + 17, ttl: .seconds(10)), "only the holder releases")
        try await store.releaseLease("coordinator", holder: "b")
        #expect(try await store.acquireLease("coordinator", holder: "a", now: t0 + 17, ttl: .seconds(10)))
        try await store.close()
    }

    @Test("with a fence, writes fail once another coordinator holds the lease", arguments: StoreKind.allCases)
    func fencing(kind: StoreKind) async throws {
        let (store, _) = try await kind.make()
        let now = Date()
        #expect(try await store.acquireLease("coordinator", holder: "a", now: now, ttl: .seconds(60)))
        store.setFence(StoreFence(lease: "coordinator", holder: "a"))
        try await store.commit([RunChange(run: newRun("r1", createdAt: t0), isNew: true)])
        // Expired but not taken over: a's writes still go through (only the holder counts).
        #expect(try await store.acquireLease("coordinator", holder: "a", now: now, ttl: .seconds(-1)))
        try await store.commit([RunChange(run: newRun("r0", createdAt: t0), isNew: true)])
        // b takes over (a's lease is moved into the past, as if a had stalled).
        #expect(try await store.acquireLease("coordinator", holder: "a", now: now, ttl: .seconds(-1)))
        #expect(try await store.acquireLease("coordinator", holder: "b", now: now, ttl: .seconds(60)))
        do {
            try await store.commit([RunChange(run: newRun("r2", createdAt: t0), isNew: true)])
            Issue.record("a commit under a lost lease was accepted")
        } catch let error as StoreError {
            #expect(error.code == .leaseLost)
        }
        #expect(try await store.run(id: "r2") == nil)
        store.setFence(nil)
        try await store.commit([RunChange(run: newRun("r3", createdAt: t0), isNew: true)])
        try await store.close()
    }

    @Test("calls cancelled at any point leave no transaction open: later calls work", arguments: StoreKind.allCases)
    func cancelledCalls(kind: StoreKind) async throws {
        let (store, _) = try await kind.make()
        // Cancelled after 0..9 scheduling turns, so some land between BEGIN and
        // COMMIT (where a skipped ROLLBACK once left the SQLite connection stuck).
        for i in 0..<60 {
            let call = Task { try await store.commit([RunChange(run: newRun("c\(i)", createdAt: t0), isNew: true)]) }
            for _ in 0..<(i % 10) { await Task.yield() }
            call.cancel()
            _ = await call.result
        }
        do {
            try await store.commit([RunChange(run: newRun("after", createdAt: t0), isNew: true)])
            #expect(try await store.run(id: "after")?.runID == "after")
            try await store.saveDefinition(definition())
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }
}
