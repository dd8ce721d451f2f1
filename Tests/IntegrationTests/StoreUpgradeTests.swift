import Foundation
import Logging
@testable import SluiceCoordinator
import SluiceWorkflow
import Testing

/// A store written by schema 1 (each run one JSON document, map elements
/// inline), with runs in flight, opened by this version: migration 2 moves
/// the elements into rows, and the runs go on to complete exactly.
@Suite("Store upgrade: schema 1 with runs in flight, migrated and completed")
struct StoreUpgradeTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    /// A fresh store at schema 1, written as version 0.5 wrote it; and a way to open it with every migration.
    func schemaOne(_ kind: StoreKind) async throws -> (write: @Sendable (String, [String]) async throws -> Void, close: @Sendable () async throws -> Void,
                                                       open: @Sendable () async throws -> any WorkflowStore) {
        switch kind {
        case .sqlite:
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-upgrade-\(UUID().uuidString).sqlite").path
            let old = try await SQLiteWorkflowStore.open(path: path, logger: .init(label: "test"), migratingUpTo: 1)
            #expect(try await old.schemaVersion() == 1)
            return ({ try await old.execute($0, $1) }, { try await old.close() }, { try await SQLiteWorkflowStore.open(path: path) })
        case .postgres:
            let database = try await SharedPostgres.createDatabase()
            let old = try await PostgresWorkflowStore.connect(url: database, migratingUpTo: 1)
            return ({ try await old.execute($0, $1) }, { try await old.close() }, { try await PostgresWorkflowStore.connect(url: database) })
        }
    }

    /// The document schema 1 stored: Foundation's JSON of the whole state, keys sorted, times in milliseconds.
    func schemaOneDocument(_ run: RunState) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .millisecondsSince1970
        return String(decoding: try encoder.encode(run), as: UTF8.self)
    }

    @Test("a half-done map and a sequence in flight complete after the upgrade, outputs exact", arguments: StoreKind.allCases)
    func upgrade(kind: StoreKind) async throws {
        let fanout = WorkflowDefinition(name: "fanout") {
            WorkflowStep.map("each", over: "input.items", task: "t", arguments: ["i": "${index}"], maxParallel: 2)
            WorkflowStep.join("all", after: ["each"])
        }
        let pair = WorkflowDefinition(name: "pair") {
            WorkflowStep.task("a", "t")
            WorkflowStep.task("b", "t", after: ["a"])
        }
        // Both runs as far as 0.5 would have taken them: two elements done, two running, one waiting; step a done.
        var map = try WorkflowStateMachine(definition: fanout, runID: "map-run", input: ["items": [10, 11, 12, 13, 14]], createdAt: t0)
        _ = map.handle(.start(at: t0))
        _ = map.handle(.taskSucceeded(taskID: map.taskID(step: "each", generation: 0, index: 0), attempt: 1, output: ["v": 0], at: t0))
        _ = map.handle(.taskSucceeded(taskID: map.taskID(step: "each", generation: 0, index: 1), attempt: 2, output: ["v": 1], at: t0))
        #expect(map.state.steps["each"]?.elements?.map(\.status) == [.succeeded, .succeeded, .running, .running, .waiting])
        var seq = try WorkflowStateMachine(definition: pair, runID: "seq-run", input: [:], createdAt: t0)
        _ = seq.handle(.start(at: t0))
        _ = seq.handle(.taskSucceeded(taskID: seq.taskID(step: "a", generation: 0), attempt: 1, output: "first", at: t0))

        let old = try await schemaOne(kind)
        for definition in [fanout, pair] {
            try await old.write("INSERT INTO workflow_definitions (name, version, definition, created_at) VALUES ($1, 1, $2, 0)"
                                    .placeholders(kind), [definition.name, String(decoding: try definition.jsonBytes(), as: UTF8.self)])
        }
        for run in [map.state, seq.state] {
            try await old.write("""
                INSERT INTO workflow_runs (id, workflow, version, status, idempotency_key, parent_run, created_at, updated_at, state)
                VALUES ($1, $2, 1, 'running', NULL, NULL, 0, 0, $3)
                """.placeholders(kind), [run.runID, run.workflow, try schemaOneDocument(run)])
        }
        try await old.close()

        let store = try await old.open()
        // A store that existed before partitions keeps one (its events are in the single coordinator queue).
        #expect(try await store.partitionCount(proposed: 16) == 1)
        // Read back through the rows as the state the machine had.
        #expect(try await store.run(id: "map-run") == map.state)
        #expect(try await store.run(id: "seq-run") == seq.state)

        let engine = RunEngine(store: store)
        for i in 2..<5 {
            try await engine.apply(.taskSucceeded(taskID: map.taskID(step: "each", generation: 0, index: i), attempt: 1,
                                                  output: ["v": .number(Double(i))], at: t0), to: "map-run")
        }
        try await engine.apply(.taskSucceeded(taskID: seq.taskID(step: "b", generation: 0), attempt: 1, output: "second", at: t0), to: "seq-run")
        try await engine.forgetRuns()  // read from the store, not the engine's cache

        let mapDone = try #require(try await engine.run("map-run"))
        #expect(mapDone.status == .completed)
        #expect(mapDone.steps["each"]?.output == [["v": 0], ["v": 1], ["v": 2], ["v": 3], ["v": 4]])
        #expect(mapDone.steps["each"]?.elements?.map(\.attempts) == [1, 2, 1, 1, 1])
        let seqDone = try #require(try await engine.run("seq-run"))
        #expect(seqDone.status == .completed)
        #expect(seqDone.steps["b"]?.output == "second")
        try await store.close()
    }
}

extension String {
    /// `$1`-style placeholders as the store's engine writes them.
    func placeholders(_ kind: StoreKind) -> String {
        kind == .postgres ? self : replacingOccurrences(of: #"\$[0-9]+"#, with: "?", options: .regularExpression)
    }
}
