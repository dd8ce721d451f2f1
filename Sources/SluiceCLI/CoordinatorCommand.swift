import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SluiceCoordinator
import SluiceCore
import SluiceRabbitMQ
import SluiceWorkflow
import UnixSignals

struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run the workflow coordinator (and its HTTP API).",
        discussion: """
        Keeps workflow state in --store: a SQLite file (the default, one coordinator) or PostgreSQL \
        (several coordinators: one is active, the others stand by and take over when it stops). \
        The HTTP API listens on --http (loopback by default; any other address, decided by what it \
        resolves to, needs a token: SLUICE_API_TOKEN, --http-token-file, or --http-token). SIGTERM or \
        SIGINT stops it after the event in hand is committed.

        Examples:
          sluice coordinator                                      # sqlite:sluice-coordinator.sqlite, http 127.0.0.1:27200
          SLUICE_API_TOKEN="$TOKEN" sluice coordinator --store postgres://sluice@db:5432/sluice --http 0.0.0.0:27200
          sluice coordinator --http 0.0.0.0:27200 --http-token-file /run/secrets/sluice-api-token
        """)

    @Option(help: "Where workflow state lives: sqlite:PATH or postgres://user:password@host:port/database, with ?sslmode=disable|prefer|require|verify-ca|verify-full and sslrootcert, sslcert, sslkey as in libpq (default: $SLUICE_STORE, else sqlite:sluice-coordinator.sqlite).")
    var store: String?
    @Option(help: "Address of the HTTP API, HOST:PORT ('none' for no API).")
    var http: String = "127.0.0.1:27200"
    @Option(help: ArgumentHelp("Bearer token the API requires; required off loopback. Prefer SLUICE_API_TOKEN or --http-token-file: a value here shows in `ps`.",
                               valueName: "token"))
    var httpToken: String?
    @Option(help: ArgumentHelp("File holding the bearer token (its first line), e.g. a mounted secret.", valueName: "path"))
    var httpTokenFile: String?
    @Option(help: "The most elements one map step may have; a start whose input holds a larger map is refused, a larger map met later fails its step.")
    var maxMapElements: Int = WorkflowLimits.standard.maxMapElements
    @Option(help: "The most elements of one map in flight at once (a map's own maxParallel, if lower, wins), so that one run's map cannot fill the work queue ahead of other runs.")
    var maxMapParallel: Int = WorkflowLimits.standard.maxMapParallel
    @Option(help: "The most bytes of JSON a step task's rendered arguments (or a sub-workflow's input, or a run's output) may take; past it the step fails.")
    var maxArgumentsBytes: Int = WorkflowLimits.standard.maxArgumentsBytes
    @Option(help: "Close an API connection that sends no part of a request for this long (a half-sent header included).")
    var httpIdleTimeout: String = "30s"
    @Option(help: "Queue for step tasks whose workflow names none.")
    var defaultQueue: String = "default"
    @Option(help: "How long the coordinator lease lasts without renewal (a standby takes over after about this long).")
    var leaseTtl: String = "10s"
    @Option(help: "How long finished runs (completed, failed, cancelled) are kept after their last change, then deleted; 'forever' keeps them. Starting a run with the idempotency key of a deleted run starts a new one.")
    var retention: String = "30d"
    @Option(help: "Also serve Prometheus metrics on HOST:PORT at /metrics (the API serves them at /metrics too).")
    var metrics: String?
    @Option(help: ArgumentHelp("File holding the key that workers sign task outcomes with (default: $SLUICE_EVENT_KEY). With a key, unsigned or badly signed step outcomes are dropped and counted.",
                               valueName: "path"))
    var eventKeyFile: String?
    @Option(help: "Log level: trace, debug, info, warning, error.")
    var logLevel: String = "info"
    @Flag(help: .hidden) var supervised = false
    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level must be trace, debug, info, warning or error") }
        guard Topology.isValidName(defaultQueue) else { throw ValidationError("--default-queue must be letters, digits, '-', '_' or '.'") }
        if http != "none" { _ = try parseHostPort(http) }
        if let metrics { _ = try parseHostPort(metrics) }
        guard try parseDuration(leaseTtl) >= .seconds(1) else { throw ValidationError("--lease-ttl must be at least 1s") }
        guard try parseDuration(httpIdleTimeout) >= .milliseconds(100) else { throw ValidationError("--http-idle-timeout must be at least 100ms") }
        _ = try retentionPeriod()
        guard maxMapElements >= 1 else { throw ValidationError("--max-map-elements must be 1 or more") }
        guard maxMapParallel >= 1 else { throw ValidationError("--max-map-parallel must be 1 or more") }
        guard maxArgumentsBytes >= 1024 else { throw ValidationError("--max-arguments-bytes must be at least 1024") }
        if httpToken != nil && httpTokenFile != nil { throw ValidationError("give --http-token or --http-token-file, not both") }
    }

    /// The API token: --http-token, --http-token-file's first line, or SLUICE_API_TOKEN.
    func apiToken() throws -> String? {
        if let httpToken { return httpToken }
        if let httpTokenFile {
            guard let data = FileManager.default.contents(atPath: httpTokenFile),
                  let text = String(data: data, encoding: .utf8) else {
                throw CLIError("cannot read --http-token-file \(httpTokenFile)")
            }
            let token = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            guard !token.isEmpty else { throw CLIError("--http-token-file \(httpTokenFile) holds no token") }
            return token
        }
        return ProcessInfo.processInfo.environment["SLUICE_API_TOKEN"]
    }

    /// `--retention`: nil for forever.
    func retentionPeriod() throws -> Duration? {
        if retention == "forever" { return nil }
        guard let ms = try? WorkflowDuration.milliseconds(retention), ms >= 1000 else {
            throw ValidationError("--retention must be a duration of at least 1s (examples: 12h, 30d) or 'forever'")
        }
        return .milliseconds(Int64(ms))
    }

    func run() async throws {
        bootstrapLogging(logLevel)
        let logger = Logger(label: "sluice.coordinator")
        // Settings first, so that a bad one fails before anything is opened.
        var apiConfiguration: CoordinatorAPI.Configuration?
        if http != "none" {
            let (host, port) = try parseHostPort(http)
            let token = try apiToken()
            let configuration = CoordinatorAPI.Configuration(host: host, port: port, token: token,
                                                             idleTimeout: try parseDuration(httpIdleTimeout),
                                                             metricsText: { PrometheusMetrics.text() })
            guard configuration.isAcceptable else {
                throw CLIError("the API on \(host) needs a token off loopback (SLUICE_API_TOKEN, --http-token-file or --http-token), or --http 127.0.0.1:\(port)")
            }
            apiConfiguration = configuration
        }
        let leaseTTL = try parseDuration(leaseTtl)
        let verifier = try eventSigner(keyFile: eventKeyFile)
        if supervised {
            SupervisedChild.resetSignals()
            SupervisedChild.stopWhenSupervisorGoes()
        }
        PrometheusMetrics.bootstrap()
        let store = try await openStore(store ?? ProcessInfo.processInfo.environment["SLUICE_STORE"] ?? "sqlite:sluice-coordinator.sqlite",
                                        logger: logger)
        do {
            let broker = try await connection.connect(name: "sluice coordinator")
            defer { Task { await broker.close() } }
            let engine = RunEngine(store: store, limits: WorkflowLimits(maxArgumentsBytes: maxArgumentsBytes, maxMapElements: maxMapElements,
                                                                                 maxMapParallel: maxMapParallel),
                                   logger: logger)
            var coordinatorConfiguration = Coordinator.Configuration(leaseTTL: leaseTTL, defaultQueue: defaultQueue,
                                                                     retention: try retentionPeriod())
            coordinatorConfiguration.eventVerifier = verifier
            if verifier == nil {
                logger.notice("no event key: step outcomes are not checked; keep producers from publishing events with broker permissions (docs/operations.md)")
            }
            let coordinator = Coordinator(broker: broker, engine: engine, configuration: coordinatorConfiguration, logger: logger)
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
                .init(service: coordinator, successTerminationBehavior: .gracefullyShutdownGroup,
                      failureTerminationBehavior: .gracefullyShutdownGroup),
            ]
            services.append(.init(service: CoordinatorMetrics(coordinator: coordinator)))
            if let metrics { services.append(.init(service: try PrometheusMetrics.server(metrics, logger: logger))) }
            if let apiConfiguration {
                let api = try CoordinatorAPI(coordinator: coordinator, configuration: apiConfiguration)
                services.append(.init(service: api.application(logger: logger)))
                logger.info("HTTP API", metadata: ["address": "http://\(apiConfiguration.host):\(apiConfiguration.port)/",
                                                   "token": "\(apiConfiguration.token == nil ? "none" : "required")"])
            }
            let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
        } catch {
            try? await store.close()
            throw error
        }
        try? await store.close()
    }
}

/// Opens `sqlite:PATH` or `postgres://...`.
func openStore(_ spec: String, logger: Logger) async throws -> any WorkflowStore {
    do {
        if spec.hasPrefix("sqlite:") {
            let path = String(spec.dropFirst("sqlite:".count))
            guard !path.isEmpty else { throw ValidationError("--store sqlite: needs a file path (sqlite:PATH)") }
            return try await SQLiteWorkflowStore.open(path: path, logger: logger)
        }
        if spec.hasPrefix("postgres://") || spec.hasPrefix("postgresql://") {
            return try await PostgresWorkflowStore.connect(url: spec, logger: logger)
        }
    } catch let error as StoreError {
        throw CLIError("cannot open the store: \(error.message)")
    }
    throw ValidationError("--store must be sqlite:PATH or postgres://user:password@host:port/database")
}

/// `HOST:PORT` (IPv6 hosts in brackets).
func parseHostPort(_ text: String) throws -> (String, Int) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
        throw ValidationError("'\(text)' is not HOST:PORT")
    }
    var host = String(text[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard !host.isEmpty else { throw ValidationError("'\(text)' has no host") }
    // A host name or an IP literal: nothing that would make a URL of it ambiguous.
    guard host.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || ".-:_%".unicodeScalars.contains($0)) }) else {
        throw ValidationError("'\(text)': the host must be a name or an IP address")
    }
    return (host, port)
}
