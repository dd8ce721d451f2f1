import SluiceCore

/// The schema of both stores, one numbered migration per change, written
/// once: a ``Dialect`` fills in the column types SQLite and PostgreSQL name
/// differently. Never edit a released migration: add the next number
/// (StoreMigrationTests pins the released ones).
enum StoreMigrations {
    /// The column types that differ between the engines.
    struct Dialect: Sendable {
        /// Milliseconds since the epoch.
        var timestamp: String
        /// An auto-incrementing 64-bit primary key.
        var serialKey: String
        /// The JSON text of a member of a JSON document held in a text column.
        var jsonMember: @Sendable (_ column: String, _ key: String) -> String
        /// A double-precision number.
        var real: String

        static let sqlite = Dialect(timestamp: "INTEGER", serialKey: "INTEGER PRIMARY KEY AUTOINCREMENT",
                                    jsonMember: { "\($0) -> '$.\($1)'" }, real: "REAL")
        static let postgres = Dialect(timestamp: "BIGINT", serialKey: "BIGSERIAL PRIMARY KEY",
                                      // json, not jsonb: it takes every string JSON allows (jsonb refuses \u0000).
                                      jsonMember: { "(\($0)::json -> '\($1)')::text" }, real: "DOUBLE PRECISION")
    }

    /// The table that records which migrations ran.
    static func schemaTable(_ d: Dialect) -> String {
        "CREATE TABLE IF NOT EXISTS sluice_schema (version INTEGER PRIMARY KEY, applied_at \(d.timestamp) NOT NULL)"
    }

    /// Work a migration does in Swift after its statements, in the same transaction.
    enum Conversion: Sendable {
        /// Map elements move from each run's document into `workflow_elements` rows.
        case mapElementsToRows
        /// Each run's, outbox row's and timer's `bucket` is set from its run
        /// id; a store that existed before (schema 1 or later when the
        /// migration began) gets one partition.
        case bucketsFromRunIDs
    }

    static func all(_ d: Dialect) -> [(version: Int, statements: [String], conversion: Conversion?)] {
        [
            (1, [
                """
                CREATE TABLE workflow_definitions (
                    name TEXT NOT NULL, version INTEGER NOT NULL, definition TEXT NOT NULL, created_at \(d.timestamp) NOT NULL,
                    PRIMARY KEY (name, version))
                """,
                """
                CREATE TABLE workflow_runs (
                    id TEXT PRIMARY KEY, workflow TEXT NOT NULL, version INTEGER NOT NULL, status TEXT NOT NULL,
                    idempotency_key TEXT UNIQUE, parent_run TEXT, created_at \(d.timestamp) NOT NULL, updated_at \(d.timestamp) NOT NULL,
                    state TEXT NOT NULL)
                """,
                "CREATE INDEX workflow_runs_status ON workflow_runs (status, created_at, id)",
                "CREATE INDEX workflow_runs_workflow ON workflow_runs (workflow, created_at, id)",
                "CREATE INDEX workflow_runs_created ON workflow_runs (created_at, id)",
                """
                CREATE TABLE workflow_outbox (
                    id \(d.serialKey), run_id TEXT NOT NULL, payload TEXT NOT NULL,
                    created_at \(d.timestamp) NOT NULL, sent_at \(d.timestamp))
                """,
                "CREATE INDEX workflow_outbox_unsent ON workflow_outbox (id) WHERE sent_at IS NULL",
                "CREATE TABLE workflow_timers (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, due_at \(d.timestamp) NOT NULL)",
                "CREATE INDEX workflow_timers_due ON workflow_timers (due_at)",
                """
                CREATE TABLE workflow_schedules (
                    id TEXT PRIMARY KEY, spec TEXT NOT NULL, next_fire_at \(d.timestamp) NOT NULL, updated_at \(d.timestamp) NOT NULL)
                """,
                "CREATE TABLE coordinator_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at \(d.timestamp) NOT NULL)",
            ], nil),
            // Map elements as rows: an element's event writes its row, not the
            // run's whole document; the input (which may hold a large map's
            // items) written once, in a column, not with every change.
            (2, [
                "ALTER TABLE workflow_runs ADD COLUMN input TEXT",
                "UPDATE workflow_runs SET input = \(d.jsonMember("state", "input"))",
                """
                CREATE TABLE workflow_elements (
                    run_id TEXT NOT NULL, step_id TEXT NOT NULL, idx INTEGER NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
                    output TEXT, error TEXT, PRIMARY KEY (run_id, step_id, idx))
                """,
            ], .mapElementsToRows),
            // Partitions (several active coordinators): each run's bucket
            // (``Topology/stepEventBucket(runID:)``) beside it, its outbox rows
            // and timers, so that a coordinator reads only those of the
            // partitions it leads; the partition count, fixed when the store
            // is created. A store that existed before this migration keeps
            // one partition (its runs' events, and its coordinators'
            // bindings, are those of the single coordinator queue): the
            // conversion records it.
            (3, [
                "ALTER TABLE workflow_runs ADD COLUMN bucket INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE workflow_outbox ADD COLUMN bucket INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE workflow_timers ADD COLUMN bucket INTEGER NOT NULL DEFAULT 0",
                "CREATE TABLE sluice_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
            ], .bucketsFromRunIDs),
            // Inputs in a table of their own: SQLite rewrites a whole row on
            // every update, so a run's input (megabytes for a map over a
            // million items) was read and written again at every commit of
            // the run.
            (4, [
                "CREATE TABLE workflow_inputs (run_id TEXT PRIMARY KEY, input TEXT NOT NULL)",
                "INSERT INTO workflow_inputs (run_id, input) SELECT id, input FROM workflow_runs WHERE input IS NOT NULL",
                "ALTER TABLE workflow_runs DROP COLUMN input",
            ], nil),
            // Tracked tasks (`sluice-track`): one small row per task, moved
            // forward by its events (`stage` orders them), pruned by age.
            (5, [
                """
                CREATE TABLE sluice_tasks (
                    id TEXT PRIMARY KEY, name TEXT NOT NULL, queue TEXT NOT NULL, status TEXT NOT NULL, attempt INTEGER NOT NULL,
                    stage INTEGER NOT NULL, enqueued_at \(d.timestamp), started_at \(d.timestamp), finished_at \(d.timestamp),
                    updated_at \(d.timestamp) NOT NULL, worker TEXT, error_type TEXT, error_message TEXT, dead_reason TEXT,
                    next_attempt_at \(d.timestamp), result TEXT, progress \(d.real), progress_message TEXT, progress_at \(d.timestamp))
                """,
                "CREATE INDEX sluice_tasks_updated ON sluice_tasks (updated_at)",
            ], nil),
            // Run concurrency: one row per run of a limited workflow, in line
            // (`holding` 0, by `seq`) or holding a slot of its key.
            (6, [
                """
                CREATE TABLE workflow_slots (
                    seq \(d.serialKey), run_id TEXT NOT NULL UNIQUE, workflow TEXT NOT NULL, slot_key TEXT NOT NULL,
                    slot_limit INTEGER NOT NULL, holding INTEGER NOT NULL)
                """,
                "CREATE INDEX workflow_slots_line ON workflow_slots (workflow, slot_key, holding, seq)",
            ], nil),
        ]
    }

    /// The tables whose rows carry a run id (column) and a bucket.
    static let bucketedTables = [("workflow_runs", "id"), ("workflow_outbox", "run_id"), ("workflow_timers", "run_id")]

    /// What the conversion writes for a store that existed before schema 3.
    static let onePartition = "INSERT INTO sluice_settings (name, value) VALUES ('partitions', '1')"

    /// Ids grouped by their run's bucket (for the conversion's updates).
    static func byBucket(_ runIDs: [String]) -> [Int: [String]] {
        Dictionary(grouping: Set(runIDs), by: { Topology.stepEventBucket(runID: $0) })
    }
}
