import SluiceCore
public import Foundation
public import Logging
import NIOSSL
import PostgresNIO
public import SluiceWorkflow
import Synchronization

/// The store for several coordinators: PostgreSQL through postgres-nio.
/// The coordinators share it; a lease in it picks the active one.
public final class PostgresWorkflowStore: WorkflowStore {
    /// The connection pool and the task that runs it; replaced when a call hangs.
    private struct Pool {
        var client: PostgresClient
        var runner: Task<Void, Never>
        /// Counts replacements, so that calls that time out together replace the pool once.
        var generation = 0
        var closed = false
    }
    private let pool: Mutex<Pool>
    private let configuration: PostgresClient.Configuration
    private let logger: Logger
    private let fence = FenceBox()
    public let url: PostgresURL
    /// How long one call may take before it is abandoned (migrations excepted).
    public let callTimeout: Duration

    private var client: PostgresClient { pool.withLock { $0.client } }

    private init(configuration: PostgresClient.Configuration, logger: Logger, url: PostgresURL, callTimeout: Duration) {
        self.configuration = configuration
        self.pool = Mutex(Self.startPool(configuration, logger: logger))
        self.logger = logger
        self.url = url
        self.callTimeout = callTimeout
    }

    private static func startPool(_ configuration: PostgresClient.Configuration, logger: Logger) -> Pool {
        // The pool's own chatter (such as a lease asked for a moment before
        // `run()` starts) is not worth a warning; failures reach callers as errors.
        var background = logger
        background.logLevel = .error
        let client = PostgresClient(configuration: configuration, backgroundLogger: background)
        return Pool(client: client, runner: Task { await client.run() })
    }

    /// Starts a new pool in place of the one of `generation`, unless that was
    /// done already (by another call that timed out) or the store is closed.
    private func replacePool(of generation: Int) {
        let old = pool.withLock { pool -> Task<Void, Never>? in
            guard !pool.closed, pool.generation == generation else { return nil }
            let old = pool.runner
            pool = Self.startPool(configuration, logger: logger)
            pool.generation = generation + 1
            return old
        }
        // Not awaited: its connections may be the ones stuck.
        old?.cancel()
    }

    /// Connects (a small pool) and brings the schema up to date.
    public static func connect(url text: String, callTimeout: Duration = .seconds(15),
                               logger: Logger = Logger(label: "sluice.store")) async throws -> PostgresWorkflowStore {
        let url = try PostgresURL(text)
        let tls = try tlsConfiguration(for: url)
        // One connection first, so that a wrong address, password or
        // certificate is an error now (the pool would keep retrying it).
        try await probe(url, tls: tls, logger: logger)
        let clientTLS: PostgresClient.Configuration.TLS = tls.map { url.sslMode == .prefer ? .prefer($0) : .require($0) } ?? .disable
        var configuration = PostgresClient.Configuration(host: url.host, port: url.port, username: url.username, password: url.password,
                                                         database: url.database, tls: clientTLS)
        configuration.options.maximumConnections = 4
        let store = PostgresWorkflowStore(configuration: configuration, logger: logger, url: url, callTimeout: callTimeout)
        do {
            try await store.migrate()
        } catch {
            try? await store.close()
            throw error
        }
        return store
    }

    /// The TLS settings for the URL's `sslmode` and certificate files; nil for `disable`.
    static func tlsConfiguration(for url: PostgresURL) throws -> TLSConfiguration? {
        if url.sslMode == .disable { return nil }
        var tls = TLSConfiguration.makeClientConfiguration()
        switch url.sslMode {
        case .disable, .prefer: tls.certificateVerification = .none  // encryption only, as libpq does
        // libpq: with a root certificate given, require checks the chain as verify-ca does.
        case .require: tls.certificateVerification = url.sslRootCertificate == nil ? .none : .noHostnameVerification
        case .verifyCA: tls.certificateVerification = .noHostnameVerification
        case .verifyFull: tls.certificateVerification = .fullVerification
        }
        do {
            if let root = url.sslRootCertificate {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(root))
            }
            if let certificate = url.sslCertificate, let key = url.sslKey {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            }
            // Made once here, so that a key that does not match its certificate is reported now.
            _ = try NIOSSLContext(configuration: tls)
        } catch {
            throw StoreError(.invalidArgument, "cannot use the TLS files named in the PostgreSQL URL: \(error)")
        }
        return tls
    }

    /// Opens and closes one connection; throws a readable error if that fails.
    private static func probe(_ url: PostgresURL, tls: TLSConfiguration?, logger: Logger) async throws {
        let connectionTLS: PostgresConnection.Configuration.TLS
        if let tls {
            let context: NIOSSLContext
            do {
                context = try NIOSSLContext(configuration: tls)
            } catch {
                throw StoreError(.invalidArgument, "cannot use the TLS files named in the PostgreSQL URL: \(error)")
            }
            connectionTLS = url.sslMode == .prefer ? .prefer(context) : .require(context)
        } else {
            connectionTLS = .disable
        }
        let configuration = PostgresConnection.Configuration(host: url.host, port: url.port, username: url.username,
                                                             password: url.password, database: url.database, tls: connectionTLS)
        var quiet = logger
        quiet.logLevel = .error
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: quiet)
        } catch let error as PSQLError where error.code == .sslUnsupported {
            throw StoreError(.database, "cannot connect to \(url): the server does not offer TLS (use sslmode=prefer or disable)")
        } catch let error as PSQLError {
            let reason = error.serverInfo?[.message] ?? "\(error.code)" + (error.underlying.map { ": \($0)" } ?? "")
            throw StoreError(.database, "cannot connect to \(url): \(reason)")
        } catch {
            throw StoreError(.database, "cannot connect to \(url): \(error)")
        }
        try? await connection.close()
    }

    public func close() async throws {
        let runner = pool.withLock { pool in
            pool.closed = true
            return pool.runner
        }
        runner.cancel()
        _ = await runner.value
    }

    // MARK: Plumbing

    /// Runs one call, with driver errors turned into store errors, and gives
    /// up on it after `callTimeout` (unless `bounded` is false). postgres-nio 1.33 can
    /// leave a query waiting forever, deaf to cancellation, when the server
    /// goes away under it; such a call is left behind, and the pool that
    /// holds its connection is replaced by a new one.
    private func mapped<T: Sendable>(_ what: String, bounded: Bool = true,
                                     _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        guard bounded else { return try await Self.mappingErrors(what, body) }
        let limit = callTimeout
        let generation = pool.withLock { $0.generation }
        let outcome = await Abandonable.run(limit) { try await Self.mappingErrors(what, body) }
        switch outcome {
        case .finished(let result):
            return try result.get()
        case .cancelled:
            throw CancellationError()
        case .timedOut:
            logger.error("PostgreSQL did not answer in time; the call is abandoned and the connection pool replaced",
                         metadata: ["call": "\(what)", "timeout": "\(limit)"])
            replacePool(of: generation)
            throw StoreError(.database, "\(what): PostgreSQL did not answer within \(limit)")
        }
    }

    /// Turns driver errors into store errors (unique violations into `conflict`).
    private static func mappingErrors<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as StoreError {
            throw error
        } catch let error as PostgresTransactionError {
            // withTransaction wraps what went wrong; map the cause.
            let cause = error.closureError ?? error.beginError ?? error.commitError ?? error.rollbackError
            guard let cause else { throw StoreError(.database, "\(what): the transaction failed") }
            return try await mappingErrors(what) { throw cause }
        } catch let error as PSQLError {
            let state = error.serverInfo?[.sqlState]
            let message = error.serverInfo?[.message] ?? "\(error.code)"
            if state == "23505" { throw StoreError(.conflict, "\(what): \(message)") }
            throw StoreError(.database, "\(what): \(message)\(state.map { " (SQLSTATE \($0))" } ?? "")")
        } catch {
            throw StoreError(.database, "\(what): \(error)")
        }
    }

    private func rows(_ query: PostgresQuery, _ what: String) async throws -> [PostgresRow] {
        try await mapped(what) { [self] in
            var out: [PostgresRow] = []
            for try await row in try await client.query(query, logger: logger) { out.append(row) }
            return out
        }
    }

    private static func collect(_ sequence: PostgresRowSequence) async throws -> [PostgresRow] {
        var out: [PostgresRow] = []
        for try await row in sequence { out.append(row) }
        return out
    }

    // MARK: Schema

    public func migrate() async throws {
        try await mapped("migrate", bounded: false) { [self] in
            _ = try await client.query(PostgresQuery(unsafeSQL: StoreMigrations.schemaTable(.postgres)), logger: logger)
            let latest = StoreMigrations.all(.postgres).last?.version ?? 0
            try await client.withTransaction(logger: logger) { connection in
                // Coordinators starting together migrate one at a time.
                _ = try await connection.query("SELECT pg_advisory_xact_lock(7251873)", logger: logger)
                let rows = try await Self.collect(try await connection.query("SELECT COALESCE(MAX(version), 0) FROM sluice_schema", logger: logger))
                let current = try rows.first?.decode(Int.self) ?? 0
                guard current <= latest else {
                    throw StoreError(.schemaTooNew, "the database is at schema \(current); this sluice knows up to \(latest)")
                }
                for migration in StoreMigrations.all(.postgres) where migration.version > current {
                    for statement in migration.statements {
                        _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    _ = try await connection.query(
                        "INSERT INTO sluice_schema (version, applied_at) VALUES (\(migration.version), \(Date().epochMilliseconds))",
                        logger: logger)
                }
            }
        }
    }

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
                    WHERE workflow = \(name) AND version = \(version) AND status IN ('pending', 'running', 'paused', 'failed')
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
        try await rows("SELECT state FROM workflow_runs WHERE id = \(id)", "run").first.map(Self.runState)
    }

    public func run(idempotencyKey: String) async throws -> RunState? {
        try await rows("SELECT state FROM workflow_runs WHERE idempotency_key = \(idempotencyKey)", "run").first.map(Self.runState)
    }

    private static func runState(_ row: PostgresRow) throws -> RunState {
        try StoreCoding.decode(RunState.self, try row.decode(String.self))
    }

    public func runs(_ query: RunQuery) async throws -> RunPage {
        var sql = "SELECT state FROM workflow_runs WHERE TRUE"
        var binds = PostgresBindings()
        func bind<T: PostgresThrowingDynamicTypeEncodable>(_ value: T) throws -> String {
            try binds.append(value)
            return "$\(binds.count)"
        }
        if let w = query.workflow { sql += " AND workflow = \(try bind(w))" }
        if let s = query.status { sql += " AND status = \(try bind(s.rawValue))" }
        if let a = query.createdAfter { sql += " AND created_at >= \(try bind(a.epochMilliseconds))" }
        if let b = query.createdBefore { sql += " AND created_at < \(try bind(b.epochMilliseconds))" }
        if let cursor = query.cursor {
            let (ms, id) = try RunCursor.parse(cursor)
            let m = try bind(ms)
            sql += " AND (created_at < \(m) OR (created_at = \(m) AND id < \(try bind(id))))"
        }
        sql += " ORDER BY created_at DESC, id DESC LIMIT \(try bind(query.limit + 1))"
        let fetched = try await rows(PostgresQuery(unsafeSQL: sql, binds: binds), "list runs").map(Self.runState)
        return RunPage(fetched: fetched, limit: query.limit)
    }

    public func activeRunIDs() async throws -> [String] {
        try await rows("SELECT id FROM workflow_runs WHERE status IN ('pending', 'running', 'paused') ORDER BY created_at, id", "active runs")
            .map { try $0.decode(String.self) }
    }

    public func setFence(_ fence: StoreFence?) { self.fence.set(fence) }

    /// Inside a transaction: fails unless the fence's holder still holds its
    /// lease (the row is locked until commit, so a takeover waits for us).
    /// Only the holder counts, not the expiry time, as in renewal.
    private static func checkFence(_ fence: StoreFence?, on connection: PostgresConnection, logger: Logger) async throws {
        guard let fence else { return }
        let rows = try await collect(try await connection.query(
            "SELECT holder FROM coordinator_leases WHERE name = \(fence.lease) FOR SHARE", logger: logger))
        guard try rows.first?.decode(String.self) == fence.holder else { throw FenceBox.lost(fence) }
    }

    public func commit(_ changes: [RunChange]) async throws {
        let prepared = try StoreCoding.prepare(changes)
        let fence = self.fence.current
        try await mapped("commit") { [self] in
            try await client.withTransaction(logger: logger) { connection in
                try await Self.checkFence(fence, on: connection, logger: logger)
                try await Self.apply(prepared, on: connection, logger: logger)
            }
        }
    }

    private static func apply(_ prepared: StoreCoding.PreparedChanges, on connection: PostgresConnection, logger: Logger) async throws {
        let now = Date().epochMilliseconds
        for (change, state, payloads) in prepared {
            let run = change.run
            let id = run.runID, status = run.status.rawValue
            if change.isNew {
                let created = run.createdAt.epochMilliseconds
                _ = try await connection.query("""
                    INSERT INTO workflow_runs (id, workflow, version, status, idempotency_key, parent_run, created_at, updated_at, state)
                    VALUES (\(id), \(run.workflow), \(run.version), \(status), \(change.idempotencyKey), \(run.parent?.runID),
                            \(created), \(now), \(state))
                    """, logger: logger)
            } else {
                let updated = try await collect(try await connection.query(
                    "UPDATE workflow_runs SET status = \(status), updated_at = \(now), state = \(state) WHERE id = \(id) RETURNING id",
                    logger: logger))
                guard !updated.isEmpty else { throw StoreError(.notFound, "run \(id) does not exist") }
            }
            for payload in payloads {
                _ = try await connection.query(
                    "INSERT INTO workflow_outbox (run_id, payload, created_at) VALUES (\(id), \(payload), \(now))", logger: logger)
            }
            for timer in change.removeTimers {
                _ = try await connection.query("DELETE FROM workflow_timers WHERE id = \(timer)", logger: logger)
            }
            for timer in change.addTimers {
                let due = timer.dueAt.epochMilliseconds
                _ = try await connection.query("""
                    INSERT INTO workflow_timers (id, run_id, due_at) VALUES (\(timer.id), \(timer.runID), \(due))
                    ON CONFLICT (id) DO UPDATE SET due_at = EXCLUDED.due_at, run_id = EXCLUDED.run_id
                    """, logger: logger)
            }
        }
    }

    // MARK: Outbox

    public func unsentOutbox(limit: Int) async throws -> [OutboxEntry] {
        try await rows("SELECT id, payload, created_at FROM workflow_outbox WHERE sent_at IS NULL ORDER BY id LIMIT \(limit)", "outbox")
            .map { row in
                let (id, payload, created) = try row.decode((Int64, String, Int64).self)
                return OutboxEntry(id: id, task: try StoreCoding.decode(StepTask.self, payload), createdAt: Date(epochMilliseconds: created))
            }
    }

    public func statistics() async throws -> StoreStatistics {
        var byStatus: [String: Int] = [:]
        for row in try await rows("SELECT status, COUNT(*) FROM workflow_runs GROUP BY status", "run counts") {
            let (status, n) = try row.decode((String, Int64).self)
            byStatus[status] = Int(n)
        }
        let count = try await rows("SELECT COUNT(*) FROM workflow_outbox WHERE sent_at IS NULL", "outbox count")
            .first.map { try $0.decode(Int64.self) } ?? 0
        let oldest = try await rows("SELECT created_at FROM workflow_outbox WHERE sent_at IS NULL ORDER BY id LIMIT 1", "outbox age")
            .first.map { try $0.decode(Int64.self) }
        return StoreStatistics(runsByStatus: byStatus, unsentOutbox: Int(count), oldestUnsent: oldest.map { Date(epochMilliseconds: $0) })
    }

    public func markSent(_ ids: [Int64]) async throws {
        guard !ids.isEmpty else { return }
        _ = try await rows("DELETE FROM workflow_outbox WHERE id = ANY(\(ids))", "mark sent")
    }

    public func pruneRuns(finishedBefore before: Date, limit: Int) async throws -> [String] {
        let finished = RunState.Status.allCases.filter(\.isFinal).map(\.rawValue)
        let cutoff = before.epochMilliseconds
        let fence = self.fence.current
        return try await mapped("prune runs") { [self] in
            try await client.withTransaction(logger: logger) { connection in
                try await Self.checkFence(fence, on: connection, logger: logger)
                let rows = try await Self.collect(try await connection.query("""
                    SELECT r.id FROM workflow_runs r LEFT JOIN workflow_runs p ON p.id = r.parent_run
                    WHERE r.status = ANY(\(finished)) AND r.updated_at < \(cutoff) AND (p.id IS NULL OR p.status = ANY(\(finished)))
                    ORDER BY r.updated_at LIMIT \(limit)
                    """, logger: logger))
                let ids = try rows.map { try $0.decode(String.self) }
                if !ids.isEmpty {
                    _ = try await connection.query("DELETE FROM workflow_timers WHERE run_id = ANY(\(ids))", logger: logger)
                    _ = try await connection.query("DELETE FROM workflow_runs WHERE id = ANY(\(ids))", logger: logger)
                }
                _ = try await connection.query("DELETE FROM workflow_outbox WHERE sent_at IS NOT NULL", logger: logger)
                return ids
            }
        }
    }

    // MARK: Timers

    public func dueTimers(now: Date, limit: Int) async throws -> [TimerEntry] {
        try await rows("SELECT id, run_id, due_at FROM workflow_timers WHERE due_at <= \(now.epochMilliseconds) ORDER BY due_at, id LIMIT \(limit)",
                       "due timers").map { row in
            let (id, run, due) = try row.decode((String, String, Int64).self)
            return TimerEntry(id: id, runID: run, dueAt: Date(epochMilliseconds: due))
        }
    }

    public func nextTimerDue() async throws -> Date? {
        try await rows("SELECT MIN(due_at) FROM workflow_timers", "next timer").first
            .flatMap { try $0.decode(Int64?.self) }.map { Date(epochMilliseconds: $0) }
    }

    // MARK: Schedules

    public func saveSchedule(_ schedule: ScheduleRecord) async throws {
        let next = schedule.nextFireAt.epochMilliseconds, now = Date().epochMilliseconds
        _ = try await rows("""
            INSERT INTO workflow_schedules (id, spec, next_fire_at, updated_at) VALUES (\(schedule.id), \(schedule.spec), \(next), \(now))
            ON CONFLICT (id) DO UPDATE SET spec = EXCLUDED.spec, next_fire_at = EXCLUDED.next_fire_at, updated_at = EXCLUDED.updated_at
            """, "save schedule")
    }

    public func schedules() async throws -> [ScheduleRecord] {
        try await rows("SELECT id, spec, next_fire_at FROM workflow_schedules ORDER BY id", "schedules").map { row in
            let (id, spec, next) = try row.decode((String, String, Int64).self)
            return ScheduleRecord(id: id, spec: spec, nextFireAt: Date(epochMilliseconds: next))
        }
    }

    public func removeSchedule(id: String) async throws -> Bool {
        !(try await rows("DELETE FROM workflow_schedules WHERE id = \(id) RETURNING id", "remove schedule")).isEmpty
    }

    public func fireSchedule(id: String, expected: Date, next: Date, changes: [RunChange], publish: [StepTask]) async throws -> Bool {
        let prepared = try StoreCoding.prepare(changes)
        let standalone = try publish.map { try StoreCoding.encode($0) }
        let was = expected.epochMilliseconds, then = next.epochMilliseconds, now = Date().epochMilliseconds
        let fence = self.fence.current
        return try await mapped("fire schedule") { [self] in
            try await client.withTransaction(logger: logger) { connection in
                try await Self.checkFence(fence, on: connection, logger: logger)
                let moved = try await Self.collect(try await connection.query("""
                    UPDATE workflow_schedules SET next_fire_at = \(then), updated_at = \(now) WHERE id = \(id) AND next_fire_at = \(was)
                    RETURNING id
                    """, logger: logger))
                guard !moved.isEmpty else { return false }
                try await Self.apply(prepared, on: connection, logger: logger)
                for payload in standalone {
                    _ = try await connection.query(
                        "INSERT INTO workflow_outbox (run_id, payload, created_at) VALUES ('', \(payload), \(now))", logger: logger)
                }
                return true
            }
        }
    }

    // MARK: Leases

    public func acquireLease(_ name: String, holder: String, now: Date, ttl: Duration) async throws -> Bool {
        let until = now.addingTimeInterval(ttl.timeInterval).epochMilliseconds
        let at = now.epochMilliseconds
        let rows = try await rows("""
            INSERT INTO coordinator_leases (name, holder, expires_at) VALUES (\(name), \(holder), \(until))
            ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
            WHERE coordinator_leases.holder = EXCLUDED.holder OR coordinator_leases.expires_at < \(at)
            RETURNING holder
            """, "acquire lease")
        return try rows.first?.decode(String.self) == holder
    }

    public func renewLease(_ name: String, holder: String, now: Date, ttl: Duration) async throws -> Bool {
        let until = now.addingTimeInterval(ttl.timeInterval).epochMilliseconds
        return !(try await rows("""
            UPDATE coordinator_leases SET expires_at = \(until) WHERE name = \(name) AND holder = \(holder)
            RETURNING name
            """, "renew lease")).isEmpty
    }

    public func releaseLease(_ name: String, holder: String) async throws {
        _ = try await rows("DELETE FROM coordinator_leases WHERE name = \(name) AND holder = \(holder)", "release lease")
    }
}
