/// The PostgreSQL schema, one numbered migration per change (the same
/// tables as SQLite's). Never edit a released migration: add the next number.
enum PostgresMigrations {
    static let all: [(version: Int, statements: [String])] = [
        (1, [
            """
            CREATE TABLE workflow_definitions (
                name TEXT NOT NULL, version INTEGER NOT NULL, definition TEXT NOT NULL, created_at BIGINT NOT NULL,
                PRIMARY KEY (name, version))
            """,
            """
            CREATE TABLE workflow_runs (
                id TEXT PRIMARY KEY, workflow TEXT NOT NULL, version INTEGER NOT NULL, status TEXT NOT NULL,
                idempotency_key TEXT UNIQUE, parent_run TEXT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
                state TEXT NOT NULL)
            """,
            "CREATE INDEX workflow_runs_status ON workflow_runs (status, created_at, id)",
            "CREATE INDEX workflow_runs_workflow ON workflow_runs (workflow, created_at, id)",
            "CREATE INDEX workflow_runs_created ON workflow_runs (created_at, id)",
            """
            CREATE TABLE workflow_outbox (
                id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, payload TEXT NOT NULL,
                created_at BIGINT NOT NULL, sent_at BIGINT)
            """,
            "CREATE INDEX workflow_outbox_unsent ON workflow_outbox (id) WHERE sent_at IS NULL",
            "CREATE TABLE workflow_timers (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, due_at BIGINT NOT NULL)",
            "CREATE INDEX workflow_timers_due ON workflow_timers (due_at)",
            """
            CREATE TABLE workflow_schedules (
                id TEXT PRIMARY KEY, spec TEXT NOT NULL, next_fire_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)
            """,
            "CREATE TABLE coordinator_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL)",
        ]),
    ]
}
