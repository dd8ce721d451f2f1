import SluiceCore
import Foundation
import Logging
import NIOSSL
import PostgresNIO
public import SluiceWorkflow
import Synchronization
public import SluiceAPI

/// Definitions, runs and their changes, in PostgreSQL.
extension PostgresWorkflowStore {
    // MARK: Definitions

    public func saveDefinition(_ definition: WorkflowDefinition) async throws {
        let text = try StoreCoding.definitionText(definition)
        let name = definition.name, version = definition.version, now = Date().epochMilliseconds
        try await mapped("save definition") { [self] in
            try await client.withTransaction(logger: logger) { connection in
                let inserted = try await Self.collect(try await connection.query("""
                    INSERT INTO workflow_definitions (name, version, definition, created_at) VALUES (\(name), \(version), \(text), \(now))
                    ON CONFLICT (name, version) DO NOTHING RETURNING name
                    """, logger: logger))
                if !inserted.isEmpty { return }
                let existing = try await Self.collect(try await connection.query(
                    "SELECT definition FROM workflow_definitions WHERE name = \(name) AND version = \(version)", logger: logger))
                guard try existing.first?.decode(String.self) == text else {
                    throw StoreError(.conflict, "\(name) version \(version) is registered with other content; register a new version")
                }
            }
        }
    }

    public func definition(name: String, version: Int?) async throws -> WorkflowDefinition? {
        let rows: [PostgresRow]
        if let version {
            rows = try await self.rows("SELECT definition FROM workflow_definitions WHERE name = \(name) AND version = \(version)", "definition")
        } else {
            rows = try await self.rows("SELECT definition FROM workflow_definitions WHERE name = \(name) ORDER BY version DESC LIMIT 1", "definition")
        }
        return try rows.first.map { try StoreCoding.definition(try $0.decode(String.self)) }
    }

    public func latestDefinitionVersion(name: String) async throws -> Int? {
        try await rows("SELECT MAX(version) FROM workflow_definitions WHERE name = \(name)", "definition version").first?.decode(Int?.self)
    }

    public func definitionSummaries(after cursor: String?, limit: Int) async throws -> [DefinitionSummary] {
        let limit = max(1, limit)
        let query: PostgresQuery
        if let cursor {
            let (name, version) = try DefinitionSummary.parse(cursor: cursor)
            query = """
                SELECT name, version, created_at, octet_length(definition) FROM workflow_definitions
                WHERE name > \(name) OR (name = \(name) AND version > \(version)) ORDER BY name, version LIMIT \(limit)
                """
        } else {
            query = "SELECT name, version, created_at, octet_length(definition) FROM workflow_definitions ORDER BY name, version LIMIT \(limit)"
        }
        return try await rows(query, "list definitions").map { row in
            let (name, version, created, bytes) = try row.decode((String, Int, Int64, Int).self)
            return DefinitionSummary(name: name, version: version, createdAt: Date(epochMilliseconds: created), bytes: bytes)
        }
    }

    public func deleteDefinition(name: String, version: Int) async throws -> DefinitionDeletion {
        let fence = self.fence.current
        return try await mapped("delete definition") { [self] in
            try await client.withTransaction(logger: logger) { connection in
                try await Self.checkFence(fence, on: connection, logger: logger)
                let using = try await Self.collect(try await connection.query("""
                    SELECT COUNT(*) FROM workflow_runs
                    WHERE workflow = \(name) AND version = \(version) AND status IN ('pending', 'running', 'paused', 'failed', 'compensating')
                    """, logger: logger))
                let count = try using.first?.decode(Int.self) ?? 0
                if count > 0 { return DefinitionDeletion.inUse(runs: count) }
                let deleted = try await Self.collect(try await connection.query(
                    "DELETE FROM workflow_definitions WHERE name = \(name) AND version = \(version) RETURNING name", logger: logger))
                return deleted.isEmpty ? .notFound : .deleted
            }
        }
    }

    // MARK: Runs

    public func run(id: String) async throws -> RunState? {
        try await runs(rows("\(unescaped: StoreCoding.selectRuns) WHERE id = \(id)", "run")).first
    }

    public func run(idempotencyKey: String) async throws -> RunState? {
        try await runs(rows("\(unescaped: StoreCoding.selectRuns) WHERE idempotency_key = \(idempotencyKey)", "run")).first
    }

    /// Runs from their rows, with their map elements read back from theirs.
    func runs(_ rows: [PostgresRow]) async throws -> [RunState] {
        var runs: [RunState] = []
        for row in rows {
            let (text, input) = try row.decode((String, String?).self)
            let (run, counts) = try StoreCoding.runDocument(text, input: input)
            if counts != nil {
                // Read again with its elements in one snapshot, so that the
                // document and the rows agree.
                if let whole = try await runWithElements(run.runID) { runs.append(whole) }
            } else {
                runs.append(run)
            }
        }
        return runs
    }

    /// A run and its element rows, read in one repeatable-read transaction.
    private func runWithElements(_ id: String) async throws -> RunState? {
        try await mapped("run") { [self] in
            try await client.withTransaction(logger: logger) { connection in
                _ = try await connection.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", logger: logger)
                guard let row = try await Self.collect(try await connection.query(
                    "\(unescaped: StoreCoding.selectRuns) WHERE id = \(id)", logger: logger)).first else { return nil }
                let (text, input) = try row.decode((String, String?).self)
                var (run, counts) = try StoreCoding.runDocument(text, input: input)
                let elements = try await Self.collect(try await connection.query(
                    "SELECT step_id, idx, status, attempts, output, error FROM workflow_elements WHERE run_id = \(id)", logger: logger)).map { row in
                    let (step, index, status, attempts, output, error) = try row.decode((String, Int, String, Int, String?, String?).self)
                    return StoreCoding.ElementColumns(runID: "", step: step, index: index, status: status, attempts: attempts, output: output, error: error)
                }
                try StoreCoding.attach(elements, counts: counts ?? [:], to: &run)
                return run
            }
        }
    }

    /// Writes element rows (replacing those with the same key).
    static func writeElements(_ elements: [StoreCoding.ElementColumns], on connection: PostgresConnection, logger: Logger) async throws {
        guard !elements.isEmpty else { return }
        // Arrays of optionals do not bind: a flag says which values are absent.
        let runIDs = elements.map(\.runID), steps = elements.map(\.step), indices = elements.map(\.index)
        let statuses = elements.map(\.status), attempts = elements.map(\.attempts)
        let outputs = elements.map { $0.output ?? "" }, hasOutput = elements.map { $0.output != nil }
        let errors = elements.map { $0.error ?? "" }, hasError = elements.map { $0.error != nil }
        _ = try await connection.query("""
            INSERT INTO workflow_elements (run_id, step_id, idx, status, attempts, output, error)
            SELECT u.run_id, u.step_id, u.idx, u.status, u.attempts, CASE WHEN u.has_output THEN u.output END, CASE WHEN u.has_error THEN u.error END
            FROM unnest(\(runIDs)::text[], \(steps)::text[], \(indices)::bigint[], \(statuses)::text[], \(attempts)::bigint[],
                        \(outputs)::text[], \(hasOutput)::bool[], \(errors)::text[], \(hasError)::bool[])
                 AS u(run_id, step_id, idx, status, attempts, output, has_output, error, has_error)
            ON CONFLICT (run_id, step_id, idx) DO UPDATE SET status = EXCLUDED.status, attempts = EXCLUDED.attempts,
                output = EXCLUDED.output, error = EXCLUDED.error
            """, logger: logger)
    }

    public func runs(_ query: RunQuery) async throws -> RunPage {
        var sql = "\(StoreCoding.selectRuns) WHERE TRUE"
        var binds = PostgresBindings()
        func bind<T: PostgresThrowingDynamicTypeEncodable>(_ value: T) throws -> String {
            try binds.append(value)
            return "$\(binds.count)"
        }
        if let w = query.workflow { sql += " AND workflow = \(try bind(w))" }
        if let s = query.status { sql += " AND status = \(try bind(s.rawValue))" }
        if let a = query.createdAfter { sql += " AND created_at >= \(try bind(a.epochMilliseconds))" }
        if let b = query.createdBefore { sql += " AND created_at < \(try bind(b.epochMilliseconds))" }
        if let k = query.idempotencyKey { sql += " AND idempotency_key = \(try bind(k))" }
        if let cursor = query.cursor {
            let (ms, id) = try RunCursor.parse(cursor)
            let m = try bind(ms)
            sql += " AND (created_at < \(m) OR (created_at = \(m) AND id < \(try bind(id))))"
        }
        sql += " ORDER BY created_at DESC, id DESC LIMIT \(try bind(query.limit + 1))"
        let fetched = try await runs(rows(PostgresQuery(unsafeSQL: sql, binds: binds), "list runs"))
        return RunPage(fetched: fetched, limit: query.limit)
    }

    public func runStatus(id: String) async throws -> RunState.Status? {
        try await rows("SELECT status FROM workflow_runs WHERE id = \(id)", "run status").first
            .flatMap { RunState.Status(rawValue: try $0.decode(String.self)) }
    }

    public func activeRunIDs() async throws -> [String] {
        try await rows("SELECT id FROM workflow_runs WHERE status IN ('pending', 'running', 'paused') ORDER BY created_at, id", "active runs")
            .map { try $0.decode(String.self) }
    }

    public func setFence(_ fence: StoreFence?) { self.fence.set(fence) }

    /// Inside a transaction: fails unless the fence's holder still holds its
    /// lease (the row is locked until commit, so a takeover waits for us).
    /// Only the holder counts, not the expiry time, as in renewal.
    static func checkFence(_ fence: StoreFence?, on connection: PostgresConnection, logger: Logger) async throws {
        guard let fence, !fence.leases.isEmpty else { return }
        let names = fence.leases.keys.sorted()
        let rows = try await collect(try await connection.query(
            "SELECT name, holder FROM coordinator_leases WHERE name = ANY(\(names)) ORDER BY name FOR SHARE", logger: logger))
        var holders: [String: String] = [:]
        for row in rows {
            let (name, holder) = try row.decode((String, String).self)
            holders[name] = holder
        }
        try FenceBox.check(fence, holders: holders)
    }

    public func commit(_ changes: [RunChange], messages: [RunMessage], sent: [Int64]) async throws -> [Int64] {
        let prepared = try StoreCoding.prepare(changes)
        let outbox = try StoreCoding.outboxRows(prepared, messages)
        let slots = StoreCoding.slotWork(prepared)
        let fence = try self.fence.current?.scoped(toChangedRuns: changes.filter { !$0.isNew }.map(\.run.runID))
        return try await mapped("commit") { [self] in
            try await client.withTransaction(logger: logger) { connection in
                try await Self.checkFence(fence, on: connection, logger: logger)
                // Runs given a slot are started by a message, after the caller's rows (their ids are not returned).
                let started = try StoreCoding.outboxRows([], try await Self.applySlots(slots, on: connection, logger: logger))
                let ids = try await Self.apply(prepared, outbox: outbox + started, on: connection, logger: logger)
                    .dropLast(started.count)
                if !sent.isEmpty {
                    _ = try await connection.query("DELETE FROM workflow_outbox WHERE id = ANY(\(sent))", logger: logger)
                }
                return Array(ids)
            }
        }
    }

    /// Puts new runs in line, gives slots back and takes them, then gives
    /// free slots to the runs first in line: their start messages. Each key
    /// is locked for the rest of the transaction (in sorted order), so two
    /// coordinators never give out the same free slot.
    static func applySlots(_ work: StoreCoding.SlotWork, on connection: PostgresConnection, logger: Logger) async throws -> [RunMessage] {
        guard !work.isEmpty else { return [] }
        for (workflow, key) in work.keys {
            let lockName = "sluice slot \(workflow) \(key)"
            _ = try await connection.query("SELECT pg_advisory_xact_lock(hashtextextended(\(lockName), 0))", logger: logger)
        }
        for (rows, holding) in [(work.waits, 0), (work.holds, 1)] where !rows.isEmpty {
            _ = try await connection.query("""
                INSERT INTO workflow_slots (run_id, workflow, slot_key, slot_limit, holding)
                SELECT u.run_id, u.workflow, u.slot_key, u.slot_limit, \(holding)
                FROM unnest(\(rows.map(\.runID))::text[], \(rows.map(\.workflow))::text[], \(rows.map(\.key))::text[], \(rows.map(\.limit))::bigint[])
                    AS u(run_id, workflow, slot_key, slot_limit)
                ON CONFLICT (run_id) DO UPDATE SET holding = GREATEST(workflow_slots.holding, EXCLUDED.holding)
                """, logger: logger)
        }
        if !work.releases.isEmpty {
            _ = try await connection.query("DELETE FROM workflow_slots WHERE run_id = ANY(\(work.releases))", logger: logger)
        }
        let now = Date()
        var started: [RunMessage] = []
        for (workflow, key) in work.keys {
            let holding = try await collect(try await connection.query("""
                SELECT COUNT(*) FROM workflow_slots WHERE workflow = \(workflow) AND slot_key = \(key) AND holding = 1
                """, logger: logger)).first.map { try $0.decode(Int.self) } ?? 0
            let line = try await collect(try await connection.query("""
                SELECT run_id, slot_limit FROM workflow_slots WHERE workflow = \(workflow) AND slot_key = \(key) AND holding = 0
                ORDER BY seq LIMIT 1000
                """, logger: logger)).map { row -> (runID: String, limit: Int) in try row.decode((String, Int).self) }
            let given = StoreCoding.admitted(holding: holding, line: line)
            if !given.isEmpty {
                _ = try await connection.query("UPDATE workflow_slots SET holding = 1 WHERE run_id = ANY(\(given))", logger: logger)
                started += given.map { StoreCoding.slotStart($0, at: now) }
            }
        }
        return started
    }

    /// Writes changes inside a transaction: one statement per kind of row,
    /// its values passed as arrays (`unnest`), so a commit of many runs costs
    /// a few round trips, not several per run.
    @discardableResult
    static func apply(_ prepared: StoreCoding.PreparedChanges, outbox: [(runID: String, bucket: Int, payload: String)],
                      on connection: PostgresConnection, logger: Logger) async throws -> [Int64] {
        let now = Date().epochMilliseconds
        let new = prepared.filter(\.change.isNew)
        if !new.isEmpty {
            let runs = new.map(\.change.run)
            let ids = runs.map(\.runID), workflows = runs.map(\.workflow), versions = runs.map(\.version)
            let statuses = runs.map(\.status.rawValue), created = runs.map(\.createdAt.epochMilliseconds), states = new.map(\.state)
            let inputs = new.map { $0.input ?? "null" }
            // Arrays of optionals do not bind: a flag says which values are absent.
            let keys = new.map { $0.change.idempotencyKey ?? "" }, hasKey = new.map { $0.change.idempotencyKey != nil }
            let parents = runs.map { $0.parent?.runID ?? "" }, hasParent = runs.map { $0.parent != nil }
            let buckets = ids.map { Topology.stepEventBucket(runID: $0) }
            _ = try await connection.query("""
                INSERT INTO workflow_runs (id, workflow, version, status, idempotency_key, parent_run, created_at, updated_at, state, bucket)
                SELECT u.id, u.workflow, u.version, u.status, CASE WHEN u.has_key THEN u.key END, CASE WHEN u.has_parent THEN u.parent END,
                       u.created, \(now), u.state, u.bucket
                FROM unnest(\(ids)::text[], \(workflows)::text[], \(versions)::bigint[], \(statuses)::text[], \(keys)::text[], \(hasKey)::bool[],
                            \(parents)::text[], \(hasParent)::bool[], \(created)::bigint[], \(states)::text[], \(buckets)::int[])
                     AS u(id, workflow, version, status, key, has_key, parent, has_parent, created, state, bucket)
                """, logger: logger)
            _ = try await connection.query("""
                INSERT INTO workflow_inputs (run_id, input) SELECT * FROM unnest(\(ids)::text[], \(inputs)::text[])
                """, logger: logger)
        }
        let updates = prepared.filter { !$0.change.isNew }
        if !updates.isEmpty {
            let ids = updates.map(\.change.run.runID), statuses = updates.map(\.change.run.status.rawValue), states = updates.map(\.state)
            let updated = try await collect(try await connection.query("""
                UPDATE workflow_runs r SET status = u.status, updated_at = \(now), state = u.state
                FROM unnest(\(ids)::text[], \(statuses)::text[], \(states)::text[]) AS u(id, status, state)
                WHERE r.id = u.id RETURNING r.id
                """, logger: logger))
            guard updated.count == updates.count else {
                let found = Set(try updated.map { try $0.decode(String.self) })
                throw StoreError(.notFound, "run \(ids.first { !found.contains($0) } ?? "?") does not exist")
            }
        }
        var ids: [Int64] = []
        if !outbox.isEmpty {
            // Ids drawn first, so the caller learns which row is which task
            // (in increasing order: the relay publishes by id).
            let count = outbox.count
            ids = try await collect(try await connection.query("""
                SELECT nextval(pg_get_serial_sequence('workflow_outbox', 'id')) FROM generate_series(1, \(count))
                """, logger: logger)).map { try $0.decode(Int64.self) }.sorted()
            _ = try await connection.query("""
                INSERT INTO workflow_outbox (id, run_id, payload, created_at, bucket)
                SELECT u.id, u.run_id, u.payload, \(now), u.bucket
                FROM unnest(\(ids)::bigint[], \(outbox.map(\.runID))::text[], \(outbox.map(\.payload))::text[], \(outbox.map(\.bucket))::int[])
                    AS u(id, run_id, payload, bucket)
                """, logger: logger)
        }
        let (replaced, elements) = StoreCoding.elementRows(prepared)
        if !replaced.isEmpty {
            _ = try await connection.query("""
                DELETE FROM workflow_elements e USING unnest(\(replaced.map(\.runID))::text[], \(replaced.map(\.step))::text[]) AS u(run_id, step_id)
                WHERE e.run_id = u.run_id AND e.step_id = u.step_id
                """, logger: logger)
        }
        try await writeElements(elements, on: connection, logger: logger)
        let removed = prepared.flatMap(\.change.removeTimers)
        if !removed.isEmpty {
            _ = try await connection.query("DELETE FROM workflow_timers WHERE id = ANY(\(removed))", logger: logger)
        }
        for timer in prepared.flatMap(\.change.addTimers) {
            let due = timer.dueAt.epochMilliseconds
            let bucket = Topology.stepEventBucket(runID: timer.runID)
            _ = try await connection.query("""
                INSERT INTO workflow_timers (id, run_id, due_at, bucket) VALUES (\(timer.id), \(timer.runID), \(due), \(bucket))
                ON CONFLICT (id) DO UPDATE SET due_at = EXCLUDED.due_at, run_id = EXCLUDED.run_id, bucket = EXCLUDED.bucket
                """, logger: logger)
        }
        return ids
    }
}
