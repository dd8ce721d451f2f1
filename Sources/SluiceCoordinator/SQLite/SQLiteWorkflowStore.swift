import SluiceCore
public import Foundation
public import Logging
import SQLiteNIO
public import SluiceWorkflow
public import SluiceAPI

/// The embedded store: one SQLite file in WAL mode, written by one
/// coordinator. Every commit is synced to disk before it returns
/// (`synchronous=FULL`): an event is acknowledged only after its state
/// change is on disk, so not even a power loss undoes an acknowledged step.
public final class SQLiteWorkflowStore: WorkflowStore {
    private let connection: SQLiteConnection
    private let gate = AsyncGate()
    private let fence = FenceBox()
    public let path: String

    private init(connection: SQLiteConnection, path: String) {
        self.connection = connection
        self.path = path
    }

    /// Opens (creating if needed) the database file and brings its schema up to date.
    public static func open(path: String, logger: Logger = Logger(label: "sluice.store")) async throws -> SQLiteWorkflowStore {
        try await open(path: path, logger: logger, migratingUpTo: nil)
    }

    /// `migratingUpTo`: stop at that schema version (tests write stores as older versions did).
    static func open(path: String, logger: Logger, migratingUpTo version: Int?) async throws -> SQLiteWorkflowStore {
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        } catch {
            throw StoreError(.database, "cannot open SQLite database \(path): \(error)")
        }
        let store = SQLiteWorkflowStore(connection: connection, path: path)
        for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=5000"] {
            _ = try await store.query(pragma)
        }
        try await store.migrate(upTo: version)
        return store
    }

    /// Runs one statement with text parameters, outside the store's own
    /// operations (for tests that write what older versions wrote).
    func execute(_ sql: String, _ texts: [String] = []) async throws {
        _ = try await read(sql, texts.map { .text($0) })
    }

    public func close() async throws {
        try await connection.close()
    }

    // MARK: Plumbing

    @discardableResult
    private func query(_ sql: String, _ binds: [SQLiteData] = []) async throws -> [SQLiteRow] {
        do {
            return try await connection.query(sql, binds)
        } catch let error as StoreError {
            throw error
        } catch {
            let text = "\(error)"
            if text.contains("UNIQUE constraint failed") || text.contains("PRIMARY KEY") {
                throw StoreError(.conflict, text)
            }
            throw StoreError(.database, "\(text) (in: \(sql.prefix(80)))")
        }
    }

    /// Runs `body` in one write transaction; nothing else touches the connection meanwhile.
    @discardableResult
    private func transaction<T: Sendable>(_ body: @Sendable @escaping () async throws -> T) async throws -> T {
        try await gate.run {
            try await self.query("BEGIN IMMEDIATE")
            do {
                let result = try await body()
                try await self.query("COMMIT")
                return result
            } catch {
                await self.rollback()
                throw error
            }
        }
    }

    /// Ends the open transaction, also for a caller that was cancelled:
    /// NIOThreadPool skips work submitted from a cancelled task, and a
    /// skipped ROLLBACK would leave the transaction open for every later
    /// call ("cannot start a transaction within a transaction").
    private func rollback() async {
        _ = try? await Task { try await self.query("ROLLBACK") }.value
    }

    /// A read outside any transaction (serialised with the writes).
    private func read(_ sql: String, _ binds: [SQLiteData] = []) async throws -> [SQLiteRow] {
        try await gate.run { try await self.query(sql, binds) }
    }

    // MARK: Schema

    public func migrate() async throws {
        try await migrate(upTo: nil)
    }

    func migrate(upTo target: Int?) async throws {
        try await gate.run {
            try await self.query(StoreMigrations.schemaTable(.sqlite))
            let rows = try await self.query("SELECT COALESCE(MAX(version), 0) AS v FROM sluice_schema")
            let current = Int(rows.first?.column("v")?.integer ?? 0)
            let latest = StoreMigrations.all(.sqlite).last?.version ?? 0
            guard current <= latest else {
                throw StoreError(.schemaTooNew, "the database is at schema \(current); this sluice knows up to \(latest)")
            }
            for migration in StoreMigrations.all(.sqlite) where migration.version > current && migration.version <= (target ?? latest) {
                try await self.query("BEGIN IMMEDIATE")
                do {
                    for statement in migration.statements { try await self.query(statement) }
                    if let conversion = migration.conversion { try await self.convert(conversion, existedAt: current) }
                    try await self.query("INSERT INTO sluice_schema (version, applied_at) VALUES (?, ?)",
                                         [.integer(migration.version), .integer(Int(Date().epochMilliseconds))])
                    try await self.query("COMMIT")
                } catch {
                    await self.rollback()
                    throw error
                }
            }
        }
    }

    /// Inside the migration's transaction.
    /// `existedAt`: the schema version the store had when this migration began (0: a new store).
    private func convert(_ conversion: StoreMigrations.Conversion, existedAt current: Int) async throws {
        switch conversion {
        case .mapElementsToRows:
            let runs = try await query("SELECT id, state FROM workflow_runs WHERE state LIKE '%\"elements\":[%'")
            for row in runs {
                guard let id = row.column("id")?.string, let state = row.column("state")?.string else { continue }
                let (document, elements) = try StoreCoding.elementsToRows(runID: id, document: state)
                try await writeElements(elements)
                try await query("UPDATE workflow_runs SET state = ? WHERE id = ?", [.text(document), .text(id)])
            }
        case .bucketsFromRunIDs:
            if current > 0 { try await query(StoreMigrations.onePartition) }
            for (table, column) in StoreMigrations.bucketedTables {
                let ids = try await query("SELECT DISTINCT \(column) AS id FROM \(table)").compactMap { $0.column("id")?.string }
                for (bucket, group) in StoreMigrations.byBucket(ids) where bucket != 0 {
                    for chunk in Self.chunks(group) {
                        let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                        try await query("UPDATE \(table) SET bucket = ? WHERE \(column) IN (\(marks))", [.integer(bucket)] + chunk.map { .text($0) })
                    }
                }
            }
        }
    }

    /// The schema version applied.
    public func schemaVersion() async throws -> Int {
        Int(try await read("SELECT COALESCE(MAX(version), 0) AS v FROM sluice_schema").first?.column("v")?.integer ?? 0)
    }

    // MARK: Definitions

    public func saveDefinition(_ definition: WorkflowDefinition) async throws {
        let text = try StoreCoding.definitionText(definition)
        try await transaction {
            let existing = try await self.query("SELECT definition FROM workflow_definitions WHERE name = ? AND version = ?",
                                                [.text(definition.name), .integer(definition.version)])
            if let stored = existing.first?.column("definition")?.string {
                guard stored == text else {
                    throw StoreError(.conflict, "\(definition.name) version \(definition.version) is registered with other content; register a new version")
                }
                return
            }
            try await self.query("INSERT INTO workflow_definitions (name, version, definition, created_at) VALUES (?, ?, ?, ?)",
                                 [.text(definition.name), .integer(definition.version), .text(text), .integer(Int(Date().epochMilliseconds))])
        }
    }

    public func definition(name: String, version: Int?) async throws -> WorkflowDefinition? {
        let rows: [SQLiteRow]
        if let version {
            rows = try await read("SELECT definition FROM workflow_definitions WHERE name = ? AND version = ?", [.text(name), .integer(version)])
        } else {
            rows = try await read("SELECT definition FROM workflow_definitions WHERE name = ? ORDER BY version DESC LIMIT 1", [.text(name)])
        }
        return try rows.first?.column("definition")?.string.map(StoreCoding.definition)
    }

    public func latestDefinitionVersion(name: String) async throws -> Int? {
        try await read("SELECT MAX(version) AS v FROM workflow_definitions WHERE name = ?", [.text(name)]).first?.column("v")?.integer
    }

    public func definitionSummaries(after cursor: String?, limit: Int) async throws -> [DefinitionSummary] {
        var sql = "SELECT name, version, created_at, length(CAST(definition AS BLOB)) AS bytes FROM workflow_definitions"
        var binds: [SQLiteData] = []
        if let cursor {
            let (name, version) = try DefinitionSummary.parse(cursor: cursor)
            sql += " WHERE name > ? OR (name = ? AND version > ?)"
            binds = [.text(name), .text(name), .integer(version)]
        }
        sql += " ORDER BY name, version LIMIT ?"
        binds.append(.integer(max(1, limit)))
        return try await read(sql, binds).map { row in
            DefinitionSummary(name: row.column("name")?.string ?? "", version: row.column("version")?.integer ?? 0,
                              createdAt: Date(epochMilliseconds: Int64(row.column("created_at")?.integer ?? 0)),
                              bytes: row.column("bytes")?.integer ?? 0)
        }
    }

    public func deleteDefinition(name: String, version: Int) async throws -> DefinitionDeletion {
        try await transaction {
            let using = try await self.query("""
                SELECT COUNT(*) AS n FROM workflow_runs
                WHERE workflow = ? AND version = ? AND status IN ('pending', 'running', 'paused', 'failed', 'compensating')
                """, [.text(name), .integer(version)])
            let count = using.first?.column("n")?.integer ?? 0
            if count > 0 { return .inUse(runs: count) }
            let deleted = try await self.query("DELETE FROM workflow_definitions WHERE name = ? AND version = ? RETURNING name",
                                               [.text(name), .integer(version)])
            return deleted.isEmpty ? .notFound : .deleted
        }
    }

    // MARK: Runs

    public func run(id: String) async throws -> RunState? {
        try await runs("\(StoreCoding.selectRuns) WHERE id = ?", [.text(id)]).first
    }

    public func run(idempotencyKey: String) async throws -> RunState? {
        try await runs("\(StoreCoding.selectRuns) WHERE idempotency_key = ?", [.text(idempotencyKey)]).first
    }

    /// Runs with their map elements, read with no commit in between (so a
    /// run's document and its element rows agree).
    private func runs(_ sql: String, _ binds: [SQLiteData]) async throws -> [RunState] {
        try await gate.run { try await self.runs(self.query(sql, binds)) }
    }

    /// Runs from their rows, with their map elements read back from theirs
    /// (inside the gate).
    private func runs(_ rows: [SQLiteRow]) async throws -> [RunState] {
        var runs: [RunState] = []
        for row in rows {
            guard let text = row.column("state")?.string else { throw StoreError(.database, "a run row has no state") }
            var (run, counts) = try StoreCoding.runDocument(text, input: row.column("input")?.string)
            if let counts {
                let elements = try await query("SELECT step_id, idx, status, attempts, output, error FROM workflow_elements WHERE run_id = ?",
                                               [.text(run.runID)]).map(Self.element)
                try StoreCoding.attach(elements, counts: counts, to: &run)
            }
            runs.append(run)
        }
        return runs
    }

    private static func element(_ row: SQLiteRow) throws -> StoreCoding.ElementColumns {
        guard let step = row.column("step_id")?.string, let index = row.column("idx")?.integer, let status = row.column("status")?.string,
              let attempts = row.column("attempts")?.integer else { throw StoreError(.database, "a bad element row") }
        return StoreCoding.ElementColumns(runID: "", step: step, index: index, status: status, attempts: attempts,
                                          output: row.column("output")?.string, error: row.column("error")?.string)
    }

    public func runs(_ query: RunQuery) async throws -> RunPage {
        var conditions: [String] = []
        var binds: [SQLiteData] = []
        if let w = query.workflow { conditions.append("workflow = ?"); binds.append(.text(w)) }
        if let s = query.status { conditions.append("status = ?"); binds.append(.text(s.rawValue)) }
        if let a = query.createdAfter { conditions.append("created_at >= ?"); binds.append(.integer(Int(a.epochMilliseconds))) }
        if let b = query.createdBefore { conditions.append("created_at < ?"); binds.append(.integer(Int(b.epochMilliseconds))) }
        if let k = query.idempotencyKey { conditions.append("idempotency_key = ?"); binds.append(.text(k)) }
        if let cursor = query.cursor {
            let (ms, id) = try RunCursor.parse(cursor)
            conditions.append("(created_at < ? OR (created_at = ? AND id < ?))")
            binds += [.integer(Int(ms)), .integer(Int(ms)), .text(id)]
        }
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        binds.append(.integer(query.limit + 1))
        let fetched = try await runs("\(StoreCoding.selectRuns) \(filter) ORDER BY created_at DESC, id DESC LIMIT ?", binds)
        return RunPage(fetched: fetched, limit: query.limit)
    }

    public func runStatus(id: String) async throws -> RunState.Status? {
        try await read("SELECT status FROM workflow_runs WHERE id = ?", [.text(id)]).first?.column("status")?.string
            .flatMap(RunState.Status.init(rawValue:))
    }

    public func activeRunIDs() async throws -> [String] {
        try await read("SELECT id FROM workflow_runs WHERE status IN ('pending', 'running', 'paused') ORDER BY created_at, id")
            .compactMap { $0.column("id")?.string }
    }

    public func commit(_ changes: [RunChange], messages: [RunMessage], sent: [Int64]) async throws -> [Int64] {
        let prepared = try StoreCoding.prepare(changes)
        let fence = try self.fence.current?.scoped(toChangedRuns: changes.filter { !$0.isNew }.map(\.run.runID))
        return try await transaction { try await self.apply(prepared, messages: messages, sent: sent, fence: fence) }
    }

    public func setFence(_ fence: StoreFence?) { self.fence.set(fence) }

    /// Inside a transaction: fails unless the fence's holder still holds its
    /// lease. Only the holder counts, not the expiry time: a lease nobody took
    /// over is still ours after a stall (see ``renewLease(_:holder:now:ttl:)``).
    private func checkFence(_ scoped: StoreFence? = nil) async throws {
        guard let fence = scoped ?? fence.current, !fence.leases.isEmpty else { return }
        let names = fence.leases.keys.sorted()
        let marks = Array(repeating: "?", count: names.count).joined(separator: ",")
        var holders: [String: String] = [:]
        for row in try await query("SELECT name, holder FROM coordinator_leases WHERE name IN (\(marks))", names.map { .text($0) }) {
            if let name = row.column("name")?.string { holders[name] = row.column("holder")?.string }
        }
        try FenceBox.check(fence, holders: holders)
    }

    /// ` AND <column> IN (...)` for a fence that names buckets, else nothing.
    private func bucketFilter(_ column: String = "bucket") -> String {
        guard let buckets = fence.current?.bucketList else { return "" }
        guard !buckets.isEmpty else { return " AND 0 = 1" }
        return " AND \(column) IN (\(buckets.map(String.init).joined(separator: ",")))"
    }

    /// Writes changes inside the current transaction: a few statements of
    /// many rows each, not a statement per row (each statement is a hop to
    /// SQLite's thread).
    @discardableResult
    private func apply(_ prepared: StoreCoding.PreparedChanges, messages: [RunMessage] = [], sent: [Int64] = [],
                       fence: StoreFence? = nil) async throws -> [Int64] {
        try await checkFence(fence)
        let now = SQLiteData.integer(Int(Date().epochMilliseconds))
        for chunk in Self.chunks(prepared.filter(\.change.isNew), size: 300) {
            let rows = Array(repeating: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", count: chunk.count).joined(separator: ", ")
            try await query("""
                INSERT INTO workflow_runs (id, workflow, version, status, idempotency_key, parent_run, created_at, updated_at, state, bucket)
                VALUES \(rows)
                """, chunk.flatMap { (change, state, _, _) -> [SQLiteData] in
                    let run = change.run
                    return [.text(run.runID), .text(run.workflow), .integer(run.version), .text(run.status.rawValue),
                            change.idempotencyKey.map(SQLiteData.text) ?? .null, run.parent.map { .text($0.runID) } ?? .null,
                            .integer(Int(run.createdAt.epochMilliseconds)), now, .text(state),
                            .integer(Topology.stepEventBucket(runID: run.runID))]
                })
            let inputs = chunk.compactMap { row in row.input.map { (row.change.run.runID, $0) } }
            if !inputs.isEmpty {
                try await query("INSERT INTO workflow_inputs (run_id, input) VALUES \(Array(repeating: "(?, ?)", count: inputs.count).joined(separator: ", "))",
                                inputs.flatMap { [SQLiteData.text($0.0), .text($0.1)] })
            }
        }
        for chunk in Self.chunks(prepared.filter { !$0.change.isNew }) {
            let rows = Array(repeating: "(?, ?, ?)", count: chunk.count).joined(separator: ", ")
            let updated = try await query("""
                UPDATE workflow_runs SET status = v.column2, updated_at = ?, state = v.column3
                FROM (VALUES \(rows)) AS v WHERE workflow_runs.id = v.column1 RETURNING workflow_runs.id
                """, [now] + chunk.flatMap { (change, state, _, _) -> [SQLiteData] in
                    [.text(change.run.runID), .text(change.run.status.rawValue), .text(state)]
                })
            guard updated.count == chunk.count else {
                let found = Set(updated.compactMap { $0.column("id")?.string })
                let missing = chunk.map(\.change.run.runID).first { !found.contains($0) } ?? "?"
                throw StoreError(.notFound, "run \(missing) does not exist")
            }
        }
        // Runs given a slot are started by a message, after the caller's rows (their ids are not returned).
        let started = try await applySlots(StoreCoding.slotWork(prepared))
        let outbox = try StoreCoding.outboxRows(prepared, messages + started)
        var ids: [Int64] = []
        if !outbox.isEmpty {
            // Ids given here (this transaction is the only writer), so the
            // caller learns which row is which task.
            let last = try await query("SELECT MAX(id) AS id FROM (SELECT seq AS id FROM sqlite_sequence WHERE name = 'workflow_outbox' "
                                       + "UNION ALL SELECT MAX(id) FROM workflow_outbox)").first?.column("id")?.integer ?? 0
            ids = (0..<outbox.count).map { Int64(last + 1 + $0) }
        }
        for (chunk, chunkIDs) in zip(Self.chunks(outbox), Self.chunks(ids)) {
            let rows = Array(repeating: "(?, ?, ?, ?, ?)", count: chunk.count).joined(separator: ", ")
            try await query("INSERT INTO workflow_outbox (id, run_id, payload, created_at, bucket) VALUES \(rows)",
                            zip(chunk, chunkIDs).flatMap { [.integer(Int($1)), .text($0.runID), .text($0.payload), now, .integer($0.bucket)] })
        }
        let (replaced, elements) = StoreCoding.elementRows(prepared)
        for (runID, step) in replaced {
            try await query("DELETE FROM workflow_elements WHERE run_id = ? AND step_id = ?", [.text(runID), .text(step)])
        }
        try await writeElements(elements)
        for chunk in Self.chunks(prepared.flatMap(\.change.removeTimers)) {
            let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            try await query("DELETE FROM workflow_timers WHERE id IN (\(marks))", chunk.map { .text($0) })
        }
        for timer in prepared.flatMap(\.change.addTimers) {
            try await query("""
                INSERT INTO workflow_timers (id, run_id, due_at, bucket) VALUES (?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET due_at = excluded.due_at, run_id = excluded.run_id, bucket = excluded.bucket
                """, [.text(timer.id), .text(timer.runID), .integer(Int(timer.dueAt.epochMilliseconds)),
                      .integer(Topology.stepEventBucket(runID: timer.runID))])
        }
        try await deleteOutbox(sent)
        return Array(ids.dropLast(started.count))
    }

    /// Puts new runs in line, gives slots back and takes them, then gives
    /// free slots to the runs first in line: their start messages.
    private func applySlots(_ work: StoreCoding.SlotWork) async throws -> [RunMessage] {
        guard !work.isEmpty else { return [] }
        for (rows, holding) in [(work.waits, 0), (work.holds, 1)] {
            for row in rows {
                try await query("""
                    INSERT INTO workflow_slots (run_id, workflow, slot_key, slot_limit, holding) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (run_id) DO UPDATE SET holding = MAX(holding, excluded.holding)
                    """, [.text(row.runID), .text(row.workflow), .text(row.key), .integer(row.limit), .integer(holding)])
            }
        }
        for chunk in Self.chunks(work.releases) {
            let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            try await query("DELETE FROM workflow_slots WHERE run_id IN (\(marks))", chunk.map { .text($0) })
        }
        let now = Date()
        var started: [RunMessage] = []
        for (workflow, key) in work.keys {
            let scope: [SQLiteData] = [.text(workflow), .text(key)]
            let holding = try await query("SELECT COUNT(*) AS n FROM workflow_slots WHERE workflow = ? AND slot_key = ? AND holding = 1",
                                          scope).first?.column("n")?.integer ?? 0
            let line = try await query("""
                SELECT run_id, slot_limit FROM workflow_slots WHERE workflow = ? AND slot_key = ? AND holding = 0 ORDER BY seq LIMIT 1000
                """, scope).compactMap { row -> (runID: String, limit: Int)? in
                    guard let runID = row.column("run_id")?.string, let limit = row.column("slot_limit")?.integer else { return nil }
                    return (runID, limit)
                }
            let given = StoreCoding.admitted(holding: holding, line: line)
            for chunk in Self.chunks(given) {
                let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                try await query("UPDATE workflow_slots SET holding = 1 WHERE run_id IN (\(marks))", chunk.map { .text($0) })
            }
            started += given.map { StoreCoding.slotStart($0, at: now) }
        }
        return started
    }

    private func writeElements(_ elements: [StoreCoding.ElementColumns]) async throws {
        for chunk in Self.chunks(elements, size: 400) {
            let rows = Array(repeating: "(?, ?, ?, ?, ?, ?, ?)", count: chunk.count).joined(separator: ", ")
            try await query("""
                INSERT INTO workflow_elements (run_id, step_id, idx, status, attempts, output, error) VALUES \(rows)
                ON CONFLICT (run_id, step_id, idx) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
                    output = excluded.output, error = excluded.error
                """, chunk.flatMap { e -> [SQLiteData] in
                    [.text(e.runID), .text(e.step), .integer(e.index), .text(e.status), .integer(e.attempts),
                     e.output.map(SQLiteData.text) ?? .null, e.error.map(SQLiteData.text) ?? .null]
                })
        }
    }

    private func deleteOutbox(_ ids: [Int64]) async throws {
        for chunk in Self.chunks(ids) {
            let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            try await query("DELETE FROM workflow_outbox WHERE id IN (\(marks))", chunk.map { .integer(Int($0)) })
        }
    }

    // MARK: Outbox

    public func unsentOutboxRows(limit: Int, after: Int64) async throws -> [OutboxRow] {
        try await read("SELECT id, payload, created_at FROM workflow_outbox WHERE sent_at IS NULL AND id > ?\(bucketFilter()) ORDER BY id LIMIT ?",
                       [.integer(Int(after)), .integer(limit)])
            .map { row in
                guard let id = row.column("id")?.integer, let payload = row.column("payload")?.string,
                      let created = row.column("created_at")?.integer else { throw StoreError(.database, "a bad outbox row") }
                return OutboxRow(id: Int64(id), payload: payload, createdAt: Date(epochMilliseconds: Int64(created)))
            }
    }

    public func statistics() async throws -> StoreStatistics {
        var byStatus: [String: Int] = [:]
        for row in try await read("SELECT status, COUNT(*) AS n FROM workflow_runs GROUP BY status") {
            if let status = row.column("status")?.string, let n = row.column("n")?.integer { byStatus[status] = n }
        }
        let count = try await read("SELECT COUNT(*) AS n FROM workflow_outbox WHERE sent_at IS NULL").first?.column("n")?.integer ?? 0
        let oldest = try await read("SELECT created_at FROM workflow_outbox WHERE sent_at IS NULL ORDER BY id LIMIT 1")
            .first?.column("created_at")?.integer
        return StoreStatistics(runsByStatus: byStatus, unsentOutbox: count, oldestUnsent: oldest.map { Date(epochMilliseconds: Int64($0)) })
    }

    /// Pieces of at most `size`, so that a statement's binds stay well under SQLite's limit.
    private static func chunks<T>(_ items: [T], size: Int = 500) -> [[T]] {
        stride(from: 0, to: items.count, by: size).map { Array(items[$0..<min($0 + size, items.count)]) }
    }

    public func pruneRuns(finishedBefore before: Date, limit: Int) async throws -> [String] {
        let finished = RunState.Status.allCases.filter(\.isFinal).map { "'\($0.rawValue)'" }.joined(separator: ",")
        return try await transaction {
            try await self.checkFence()
            let ids = try await self.query("""
                SELECT r.id FROM workflow_runs r LEFT JOIN workflow_runs p ON p.id = r.parent_run
                WHERE r.status IN (\(finished)) AND r.updated_at < ? AND (p.id IS NULL OR p.status IN (\(finished)))\(self.bucketFilter("r.bucket"))
                ORDER BY r.updated_at LIMIT ?
                """, [.integer(Int(before.epochMilliseconds)), .integer(limit)]).compactMap { $0.column("id")?.string }
            for chunk in Self.chunks(ids) {
                let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                try await self.query("DELETE FROM workflow_timers WHERE run_id IN (\(marks))", chunk.map { .text($0) })
                try await self.query("DELETE FROM workflow_elements WHERE run_id IN (\(marks))", chunk.map { .text($0) })
                try await self.query("DELETE FROM workflow_inputs WHERE run_id IN (\(marks))", chunk.map { .text($0) })
                try await self.query("DELETE FROM workflow_runs WHERE id IN (\(marks))", chunk.map { .text($0) })
            }
            try await self.query("DELETE FROM workflow_outbox WHERE sent_at IS NOT NULL")
            return ids
        }
    }

    // MARK: Timers

    public func dueTimers(now: Date, limit: Int) async throws -> [TimerEntry] {
        try await read("SELECT id, run_id, due_at FROM workflow_timers WHERE due_at <= ?\(bucketFilter()) ORDER BY due_at, id LIMIT ?",
                       [.integer(Int(now.epochMilliseconds)), .integer(limit)]).map(Self.timer)
    }

    public func nextTimerDue() async throws -> Date? {
        try await read("SELECT MIN(due_at) AS due FROM workflow_timers WHERE 1 = 1\(bucketFilter())").first?.column("due")?.integer
            .map { Date(epochMilliseconds: Int64($0)) }
    }

    private static func timer(_ row: SQLiteRow) throws -> TimerEntry {
        guard let id = row.column("id")?.string, let run = row.column("run_id")?.string, let due = row.column("due_at")?.integer else {
            throw StoreError(.database, "a bad timer row")
        }
        return TimerEntry(id: id, runID: run, dueAt: Date(epochMilliseconds: Int64(due)))
    }

    // MARK: Schedules

    public func saveSchedule(_ schedule: ScheduleRecord) async throws {
        try await transaction {
            try await self.query("""
                INSERT INTO workflow_schedules (id, spec, next_fire_at, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, next_fire_at = excluded.next_fire_at, updated_at = excluded.updated_at
                """, [.text(schedule.id), .text(schedule.spec), .integer(Int(schedule.nextFireAt.epochMilliseconds)),
                      .integer(Int(Date().epochMilliseconds))])
        }
    }

    public func schedules() async throws -> [ScheduleRecord] {
        try await read("SELECT id, spec, next_fire_at FROM workflow_schedules ORDER BY id").map { row in
            guard let id = row.column("id")?.string, let spec = row.column("spec")?.string,
                  let next = row.column("next_fire_at")?.integer else { throw StoreError(.database, "a bad schedule row") }
            return ScheduleRecord(id: id, spec: spec, nextFireAt: Date(epochMilliseconds: Int64(next)))
        }
    }

    public func replaceSchedule(_ schedule: ScheduleRecord, ifSpec expected: String) async throws -> Bool {
        try await transaction {
            !(try await self.query("""
                UPDATE workflow_schedules SET spec = ?, next_fire_at = ?, updated_at = ? WHERE id = ? AND spec = ? RETURNING id
                """, [.text(schedule.spec), .integer(Int(schedule.nextFireAt.epochMilliseconds)), .integer(Int(Date().epochMilliseconds)),
                      .text(schedule.id), .text(expected)])).isEmpty
        }
    }

    public func removeSchedule(id: String) async throws -> Bool {
        try await transaction {
            !(try await self.query("DELETE FROM workflow_schedules WHERE id = ? RETURNING id", [.text(id)])).isEmpty
        }
    }

    public func fireSchedule(id: String, expected: Date, next: Date, changes: [RunChange], publish: [StepTask]) async throws -> Bool {
        let prepared = try StoreCoding.prepare(changes)
        let standalone = try publish.map(StoreCoding.taskText)
        return try await transaction {
            let rows = try await self.query("""
                UPDATE workflow_schedules SET next_fire_at = ?, updated_at = ? WHERE id = ? AND next_fire_at = ? RETURNING id
                """, [.integer(Int(next.epochMilliseconds)), .integer(Int(Date().epochMilliseconds)), .text(id),
                      .integer(Int(expected.epochMilliseconds))])
            guard !rows.isEmpty else { return false }
            try await self.apply(prepared)
            for payload in standalone {
                try await self.query("INSERT INTO workflow_outbox (run_id, payload, created_at, bucket) VALUES ('', ?, ?, ?)",
                                     [.text(payload), .integer(Int(Date().epochMilliseconds)), .integer(Topology.stepEventBucket(runID: ""))])
            }
            return true
        }
    }

    // MARK: Leases

    public func acquireLease(_ name: String, holder: String, now: Date, ttl: Duration) async throws -> Bool {
        let until = now.addingTimeInterval(ttl.timeInterval)
        return try await transaction {
            let rows = try await self.query("""
                INSERT INTO coordinator_leases (name, holder, expires_at) VALUES (?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                WHERE coordinator_leases.holder = excluded.holder OR coordinator_leases.expires_at < ?
                RETURNING holder
                """, [.text(name), .text(holder), .integer(Int(until.epochMilliseconds)), .integer(Int(now.epochMilliseconds))])
            return rows.first?.column("holder")?.string == holder
        }
    }

    public func renewLease(_ name: String, holder: String, now: Date, ttl: Duration) async throws -> Bool {
        let until = now.addingTimeInterval(ttl.timeInterval)
        return try await transaction {
            !(try await self.query("""
                UPDATE coordinator_leases SET expires_at = ? WHERE name = ? AND holder = ? RETURNING name
                """, [.integer(Int(until.epochMilliseconds)), .text(name), .text(holder)])).isEmpty
        }
    }

    public func releaseLease(_ name: String, holder: String) async throws {
        try await transaction {
            try await self.query("DELETE FROM coordinator_leases WHERE name = ? AND holder = ?", [.text(name), .text(holder)])
        }
    }

    public func leases(prefix: String, now: Date) async throws -> [String: String] {
        var found: [String: String] = [:]
        for row in try await read("SELECT name, holder FROM coordinator_leases WHERE substr(name, 1, ?) = ? AND expires_at >= ?",
                                  [.integer(prefix.unicodeScalars.count), .text(prefix), .integer(Int(now.epochMilliseconds))]) {
            if let name = row.column("name")?.string, let holder = row.column("holder")?.string { found[name] = holder }
        }
        return found
    }

    public func partitionCount(proposed: Int) async throws -> Int {
        try await transaction {
            try await self.query("INSERT INTO sluice_settings (name, value) VALUES ('partitions', ?) ON CONFLICT (name) DO NOTHING",
                                 [.text(String(proposed))])
            let stored = try await self.query("SELECT value FROM sluice_settings WHERE name = 'partitions'").first?.column("value")?.string
            guard let count = stored.flatMap({ Int($0) }) else { throw StoreError(.database, "the store's partition count is not a number") }
            return count
        }
    }

    // MARK: Tracked tasks

    private static func sqliteValue(_ value: TaskTrackingSQL.Value) -> SQLiteData {
        switch value {
        case .text(let v): v.map(SQLiteData.text) ?? .null
        case .integer(let v): v.map { .integer(Int($0)) } ?? .null
        case .real(let v): v.map(SQLiteData.float) ?? .null
        }
    }

    public func recordTaskChanges(_ changes: [TaskTrackingChange]) async throws {
        guard !changes.isEmpty else { return }
        let statements = TaskTrackingSQL.statements(for: changes).map { (TaskTrackingSQL.sqlite($0.0), $0.1.map(Self.sqliteValue)) }
        try await transaction {
            for (sql, binds) in statements { try await self.query(sql, binds) }
        }
    }

    public func trackedTask(id: String) async throws -> TrackedTask? {
        guard let row = try await read(TaskTrackingSQL.sqlite(TaskTrackingSQL.select), [.text(id)]).first else { return nil }
        func value(_ column: String) -> SQLiteData? {
            guard let v = row.column(column), v != .null else { return nil }
            return v
        }
        return try TaskTrackingSQL.record(text: { value($0)?.string }, integer: { value($0)?.integer.map(Int64.init) },
                                          real: { value($0)?.double })
    }

    public func pruneTrackedTasks(finishedBefore: Date, unfinishedBefore: Date, limit: Int) async throws -> Int {
        try await transaction {
            try await self.query(TaskTrackingSQL.sqlite(TaskTrackingSQL.prune),
                                 [.integer(Int(finishedBefore.epochMilliseconds)), .integer(Int(unfinishedBefore.epochMilliseconds)),
                                  .integer(limit)]).count
        }
    }
}
