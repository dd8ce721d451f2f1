#if canImport(Glibc)
import Glibc
#endif
import Logging
public import ServiceLifecycle
import SluiceCore
import SluiceRabbitMQ
import SluiceWorker
import UnixSignals

/// A worker process: built-in tasks and `--exec`, the options' limits, a
/// metrics endpoint if asked for, and an idle memory trim, run until
/// SIGTERM or SIGINT. `sluice worker` and `sluice-worker` both run this.
public enum WorkerProcess {
    /// Runs the worker. `tracer`, when spans are exported, runs beside it
    /// and stops last; `supervision`, for a process a supervisor runs.
    public static func run(_ options: WorkerOptions, service: ServiceOptions, connection: ConnectionOptions,
                           tracer: (any Service)? = nil, supervision: Supervision? = nil) async throws {
        // A --exec child that exits without reading its input must not kill
        // the worker: such writes fail with EPIPE instead.
        signal(SIGPIPE, SIG_IGN)
        if supervision != nil { SupervisedWorker.resetSignals() }
        let logger = Logger(label: "sluice.worker")
        var registry = BuiltinTasks.registry()
        if let exec = options.exec { registry.fallback = ExecHandler(command: exec, traced: tracer != nil).handle }
        var configuration = try options.configuration()
        configuration.eventSigner = try eventSigner(keyFile: service.eventKeyFile)
        if let supervision {
            supervision.apply(to: &configuration)
            try await SupervisedWorker.listenToSupervisor()
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let metrics = service.metrics {
            PrometheusMetrics.bootstrap()
            services.append(.init(service: try PrometheusMetrics.server(metrics, logger: logger)))
        }
        let broker = try await connection.connect(name: "sluice worker \(Worker.defaultWorkerID)")
        PrometheusMetrics.reportNode(of: broker.connection)
        let worker = Worker(broker: broker, registry: registry, configuration: configuration, logger: logger)
        services.insert(.init(service: worker, successTerminationBehavior: .gracefullyShutdownGroup,
                              failureTerminationBehavior: .gracefullyShutdownGroup), at: 0)
        services.append(.init(service: IdleMemoryTrim(worker: worker)))
        // First, so that it stops last (services stop in reverse order) and sends the worker's last spans.
        if let tracer { services.insert(.init(service: tracer), at: 0) }
        let group = ServiceGroup(configuration: .init(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        await broker.close()
    }
}
