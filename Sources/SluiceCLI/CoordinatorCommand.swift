import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SluiceCoordinator
import SluiceCore
import SluiceRabbitMQ
import SluiceWorkflow
import UnixSignals
import SluiceWorkerProcess

struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run the workflow coordinator (and its HTTP API).",
        discussion: """
        Keeps workflow state in --store: a SQLite file (the default, one coordinator) or PostgreSQL \
        (several coordinators). A PostgreSQL store is split into --partitions partitions when it is \
        created (16 by default): every coordinator on it leads a share of them and runs their \
        workflows, and the others take over a stopped or dead one's share within about a lease \
        TTL. A store created with one partition (as before 0.6) has one active coordinator; the \
        others stand by. \
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
    @Option(help: "The most bytes of JSON (or KiB, MiB) a step task's rendered arguments (or a sub-workflow's input, or a run's output) may take; past it the step fails.")
    var maxArgumentsBytes = ByteSize(bytes: WorkflowLimits.standard.maxArgumentsBytes)
    @Flag(inversion: .prefixedNo, help: "Serve the web dashboard under /ui on the API's address (signed in with the API's token when it has one).")
    var dashboard = true
    @Option(help: ArgumentHelp("A trace viewer's page for one trace, with {traceId} where the id goes (e.g. http://jaeger:16686/trace/{traceId}): the dashboard links trace ids there.",
                               valueName: "url"))
    var traceURL: String?
    @Option(help: "Close an API connection that sends no part of a request for this long (a half-sent header included).")
    var httpIdleTimeout: DurationArgument = "30s"
    @Option(help: "Queue for step tasks whose workflow names none.")
    var defaultQueue: String = "default"
    @Option(help: "How long the coordinator lease lasts without renewal (a standby takes over after about this long).")
    var leaseTtl: DurationArgument = "10s"
    @Option(help: "How long finished runs (completed, failed, cancelled) are kept after their last change, then deleted; 'forever' keeps them. Starting a run with the idempotency key of a deleted run starts a new one.")
    var retention: RetentionArgument = "30d"
    @Option(help: "Partitions of a new PostgreSQL store (one that has none yet): 1, 2, 4, 8, 16, 32 or 64. Each coordinator on the store leads a share of them. A store keeps the count it was created with. SQLite stores have 1. (default: 16 for PostgreSQL, 1 for SQLite)")
    var partitions: Int?
    @Flag(help: "Also receive every task's outcome, as versions before 0.6 did, for workers of such a version still running during an upgrade (upgrade the workers first and this is not needed). Without it those bindings are removed.")
    var legacyEventBindings = false
    @Flag(inversion: .prefixedNo, help: "Ask workers to send step outcomes in packs (one broker message carries the outcomes that are ready together). Every coordinator of the prefix must be of this version or later: during an upgrade from an earlier one, start the new coordinators with --no-event-packs until no earlier one runs.")
    var eventPacks = true
    @Option(help: "How long the status of a tracked task (sluice enqueue --track) is kept after it succeeded or went dead; one that never finishes is kept 7 times as long after its last news.")
    var taskRetention: DurationArgument = "24h"
    @Option(help: "How often to sample the queues for the sluice_queue_* gauges on /metrics (ready, oldest age, consumers, dead): at least 1s, or 'off'.")
    var queueMetricsInterval: IntervalOrOff = "10s"
    @OptionGroup var managementOptions: ManagementOptions
    @OptionGroup var service: ServiceOptions
    @OptionGroup var tracing: TracingOptions
    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        if let traceURL {
            guard traceURL.contains("{traceId}"), let url = URL(string: traceURL.replacingOccurrences(of: "{traceId}", with: "0")),
                  ["http", "https"].contains(url.scheme ?? "") else {
                throw ValidationError("--trace-url must be an http(s) URL with {traceId} in it, e.g. http://jaeger:16686/trace/{traceId}")
            }
        }
        guard Topology.isValidName(defaultQueue) else { throw ValidationError("--default-queue must be letters, digits, '-', '_' or '.'") }
        if http != "none" { _ = try parseHostPort(http) }
        guard taskRetention.duration >= .seconds(1) else { throw ValidationError("--task-retention must be at least 1s") }
        guard leaseTtl.duration >= .seconds(1) else { throw ValidationError("--lease-ttl must be at least 1s") }
        guard httpIdleTimeout.duration >= .milliseconds(100) else { throw ValidationError("--http-idle-timeout must be at least 100ms") }
        guard maxMapElements >= 1 else { throw ValidationError("--max-map-elements must be 1 or more") }
        guard maxMapParallel >= 1 else { throw ValidationError("--max-map-parallel must be 1 or more") }
        guard maxArgumentsBytes.bytes >= 1024 else { throw ValidationError("--max-arguments-bytes must be at least 1024") }
        if httpToken != nil && httpTokenFile != nil { throw ValidationError("give --http-token or --http-token-file, not both") }
        if let partitions, !Topology.isValidPartitionCount(partitions) {
            throw ValidationError("--partitions must divide 64: 1, 2, 4, 8, 16, 32 or 64")
        }
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

    func run() async throws {
        service.bootstrapLogging()
        let logger = Logger(label: "sluice.coordinator")
        // Before the API exists: it starts a span per run only with a tracer.
        let exporter = try tracing.bootstrap(serviceName: "sluice-coordinator", logger: logger)
        // Settings first, so that a bad one fails before anything is opened.
        var apiConfiguration: CoordinatorAPI.Configuration?
        if http != "none" {
            let (host, port) = try parseHostPort(http)
            let token = try apiToken()
            var configuration = CoordinatorAPI.Configuration(host: host, port: port, token: token,
                                                             idleTimeout: httpIdleTimeout.duration,
                                                             metricsText: { PrometheusMetrics.text() }, dashboard: dashboard)
            configuration.traceURL = traceURL
            guard configuration.isAcceptable else {
                throw CLIError("the API on \(host) needs a token off loopback (SLUICE_API_TOKEN, --http-token-file or --http-token), or --http 127.0.0.1:\(port)")
            }
            apiConfiguration = configuration
        }
        let leaseTTL = leaseTtl.duration
        let verifier = try eventSigner(keyFile: service.eventKeyFile)
        if service.supervised {
            SupervisedWorker.resetSignals()
            try SupervisedWorker.stopWhenSupervisorGoes()
        }
        PrometheusMetrics.bootstrap()
        let location = store ?? ProcessInfo.processInfo.environment["SLUICE_STORE"] ?? "sqlite:sluice-coordinator.sqlite"
        let isSQLite = !location.hasPrefix("postgres")
        if isSQLite, let partitions, partitions > 1 {
            throw CLIError("--partitions needs a PostgreSQL store: a SQLite store is one coordinator's, with one partition")
        }
        let store = try await openStore(location, logger: logger)
        do {
            let broker = try await connection.connect(name: "sluice coordinator")
            PrometheusMetrics.reportNode(of: broker.connection)
            defer { Task { await broker.close() } }
            // Before the API answers: a tracked task enqueued once the
            // coordinator is up has a queue for its events, even while the
            // tracker's consumer is still starting (its events would be unroutable).
            try await broker.prepareTrackingQueue()
            let engine = RunEngine(store: store, limits: WorkflowLimits(maxArgumentsBytes: maxArgumentsBytes.bytes, maxMapElements: maxMapElements,
                                                                                 maxMapParallel: maxMapParallel),
                                   logger: logger)
            var coordinatorConfiguration = Coordinator.Configuration(leaseTTL: leaseTTL, defaultQueue: defaultQueue,
                                                                     retention: retention.period)
            coordinatorConfiguration.eventVerifier = verifier
            coordinatorConfiguration.legacyEventBindings = legacyEventBindings
            coordinatorConfiguration.eventPacks = eventPacks
            coordinatorConfiguration.partitions = partitions ?? (isSQLite ? 1 : 16)
            if verifier == nil {
                logger.notice("no event key: step outcomes are not checked; keep producers from publishing events with broker permissions (docs/operations.md)")
            }
            let coordinator = Coordinator(broker: broker, engine: engine, configuration: coordinatorConfiguration, logger: logger)
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
                .init(service: coordinator, successTerminationBehavior: .gracefullyShutdownGroup,
                      failureTerminationBehavior: .gracefullyShutdownGroup),
            ]
            services.append(.init(service: CoordinatorMetrics(coordinator: coordinator)))
            services.append(.init(service: TaskTracker(broker: broker, store: store,
                                                       configuration: .init(retention: taskRetention.duration,
                                                                            unfinishedRetention: taskRetention.duration * 7,
                                                                            eventVerifier: verifier),
                                                       logger: logger)))
            var apiConfiguration = apiConfiguration
            if let every = queueMetricsInterval.duration {
                let board = OperationsBoard(interval: every)
                services.append(.init(service: QueueGauges(broker: broker, management: try managementOptions.client(connection), interval: every,
                                                           defaultQueue: defaultQueue, leads: { coordinator.isActive }, logger: logger,
                                                           board: board)))
                apiConfiguration?.operations = board.apiOperations
            }
            if let metrics = service.metrics { services.append(.init(service: try PrometheusMetrics.server(metrics, logger: logger))) }
            if let apiConfiguration {
                let api = try CoordinatorAPI(coordinator: coordinator, configuration: apiConfiguration)
                services.append(.init(service: api.application(logger: logger)))
                logger.info("HTTP API", metadata: ["address": "http://\(apiConfiguration.host):\(apiConfiguration.port)/",
                                                   "token": "\(apiConfiguration.token == nil ? "none" : "required")"])
            }
            // First, so that it stops last and sends the last spans.
            if let exporter { services.insert(.init(service: exporter), at: 0) }
            let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
        } catch {
            try? await store.close()
            throw error
        }
        try? await store.close()
    }
}

