import SluiceCore
import Foundation
public import Logging
import NIOSSL
import PostgresNIO
import SluiceWorkflow
import Synchronization

/// The store for several coordinators: PostgreSQL through postgres-nio.
/// The coordinators share it; a lease in it picks the active one.
public final class PostgresWorkflowStore: WorkflowStore {
    /// The connection pool and the task that runs it; replaced when a call hangs.
    struct Pool {
        var client: PostgresClient
        var runner: Task<Void, Never>
        /// Counts replacements, so that calls that time out together replace the pool once.
        var generation = 0
        var closed = false
    }
    let pool: Mutex<Pool>
    let configuration: PostgresClient.Configuration
    let logger: Logger
    let fence = FenceBox()
    public let url: PostgresURL
    /// How long one call may take before it is abandoned (migrations excepted).
    public let callTimeout: Duration

    var client: PostgresClient { pool.withLock { $0.client } }

    private init(configuration: PostgresClient.Configuration, logger: Logger, url: PostgresURL, callTimeout: Duration) {
        self.configuration = configuration
        self.pool = Mutex(Self.startPool(configuration, logger: logger))
        self.logger = logger
        self.url = url
        self.callTimeout = callTimeout
    }

    static func startPool(_ configuration: PostgresClient.Configuration, logger: Logger) -> Pool {
        // The pool's own chatter (such as a lease asked for a moment before
        // `run()` starts) is not worth a warning; failures reach callers as errors.
        var background = logger
        background.logLevel = .error
        let client = PostgresClient(configuration: configuration, backgroundLogger: background)
        return Pool(client: client, runner: Task { await client.run() })
    }

    /// Starts a new pool in place of the one of `generation`, unless that was
    /// done already (by another call that timed out) or the store is closed.
    func replacePool(of generation: Int) {
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
        try await connect(url: text, callTimeout: callTimeout, logger: logger, migratingUpTo: nil)
    }

    /// `migratingUpTo`: stop at that schema version (tests write stores as older versions did).
    static func connect(url text: String, callTimeout: Duration = .seconds(15), logger: Logger = Logger(label: "sluice.store"),
                        migratingUpTo target: Int?) async throws -> PostgresWorkflowStore {
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
            try await store.migrate(upTo: target)
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
    static func probe(_ url: PostgresURL, tls: TLSConfiguration?, logger: Logger) async throws {
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
    func mapped<T: Sendable>(_ what: String, bounded: Bool = true,
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
    static func mappingErrors<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
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

    func rows(_ query: PostgresQuery, _ what: String) async throws -> [PostgresRow] {
        try await mapped(what) { [self] in
            var out: [PostgresRow] = []
            for try await row in try await client.query(query, logger: logger) { out.append(row) }
            return out
        }
    }

    static func collect(_ sequence: PostgresRowSequence) async throws -> [PostgresRow] {
        var out: [PostgresRow] = []
        for try await row in sequence { out.append(row) }
        return out
    }

    // MARK: Schema

    /// Inside the migration's transaction.
    /// `existedAt`: the schema version the store had when this migration began (0: a new store).
    static func convert(_ conversion: StoreMigrations.Conversion, existedAt current: Int, on connection: PostgresConnection,
                        logger: Logger) async throws {
        switch conversion {
        case .mapElementsToRows:
            let runs = try await collect(try await connection.query(
                "SELECT id, state FROM workflow_runs WHERE state LIKE \("%\"elements\":[%")", logger: logger))
            for row in runs {
                let (id, state) = try row.decode((String, String).self)
                let (document, elements) = try StoreCoding.elementsToRows(runID: id, document: state)
                try await writeElements(elements, on: connection, logger: logger)
                _ = try await connection.query("UPDATE workflow_runs SET state = \(document) WHERE id = \(id)", logger: logger)
            }
        case .bucketsFromRunIDs:
            if current > 0 { _ = try await connection.query(PostgresQuery(unsafeSQL: StoreMigrations.onePartition), logger: logger) }
            for (table, column) in StoreMigrations.bucketedTables {
                let ids = try await collect(try await connection.query(
                    PostgresQuery(unsafeSQL: "SELECT DISTINCT \(column) FROM \(table)"), logger: logger)).map { try $0.decode(String.self) }
                for (bucket, group) in StoreMigrations.byBucket(ids) where bucket != 0 {
                    var binds = PostgresBindings()
                    binds.append(bucket)
                    binds.append(group)
                    _ = try await connection.query(PostgresQuery(unsafeSQL: "UPDATE \(table) SET bucket = $1 WHERE \(column) = ANY($2)", binds: binds),
                                                   logger: logger)
                }
            }
        }
    }

    public func migrate() async throws {
        try await migrate(upTo: nil)
    }

    /// Runs one statement with text parameters, outside the store's own
    /// operations (for tests that write what older versions wrote).
    func execute(_ sql: String, _ texts: [String] = []) async throws {
        var binds = PostgresBindings()
        for text in texts { binds.append(text) }
        _ = try await rows(PostgresQuery(unsafeSQL: sql, binds: binds), "execute")
    }

    func migrate(upTo target: Int?) async throws {
        try await mapped("migrate", bounded: false) { [self] in
            let latest = StoreMigrations.all(.postgres).last?.version ?? 0
            try await client.withTransaction(logger: logger) { connection in
                // Coordinators starting together migrate one at a time, from
                // the schema table on (two concurrent CREATE TABLE IF NOT
                // EXISTS can both try to create it, and one fails).
                _ = try await connection.query("SELECT pg_advisory_xact_lock(7251873)", logger: logger)
                _ = try await connection.query(PostgresQuery(unsafeSQL: StoreMigrations.schemaTable(.postgres)), logger: logger)
                let rows = try await Self.collect(try await connection.query("SELECT COALESCE(MAX(version), 0) FROM sluice_schema", logger: logger))
                let current = try rows.first?.decode(Int.self) ?? 0
                guard current <= latest else {
                    throw StoreError(.schemaTooNew, "the database is at schema \(current); this sluice knows up to \(latest)")
                }
                for migration in StoreMigrations.all(.postgres) where migration.version > current && migration.version <= (target ?? latest) {
                    for statement in migration.statements {
                        _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    if let conversion = migration.conversion {
                        try await Self.convert(conversion, existedAt: current, on: connection, logger: logger)
                    }
                    _ = try await connection.query(
                        "INSERT INTO sluice_schema (version, applied_at) VALUES (\(migration.version), \(Date().epochMilliseconds))",
                        logger: logger)
                }
            }
        }
    }
}
