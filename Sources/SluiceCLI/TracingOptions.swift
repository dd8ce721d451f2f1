import ArgumentParser
import Foundation
import Logging
import OTel
import ServiceLifecycle
import SluiceCore
import Tracing
import SluiceWorkerProcess

/// Where spans go: OTLP/HTTP to a collector (swift-otel), when asked for by
/// `--otel-endpoint` or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` /
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables. Only traces are exported
/// (metrics stay on Prometheus, logs on standard error); the other standard
/// variables (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_PROTOCOL` such as
/// `http/json`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`,
/// `OTEL_BSP_SCHEDULE_DELAY`...) apply as the OpenTelemetry specification says.
struct TracingOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Export trace spans over OTLP/HTTP to this collector, e.g. http://127.0.0.1:4318 (its /v1/traces). Default: $OTEL_EXPORTER_OTLP_ENDPOINT; none when unset.",
                               valueName: "url"))
    var otelEndpoint: String?

    func validate() throws {
        if let otelEndpoint {
            guard let url = URL(string: otelEndpoint), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
                throw ValidationError("--otel-endpoint must be an http:// or https:// URL, such as http://127.0.0.1:4318")
            }
        }
    }

    /// Whether trace export is asked for at all, even if the environment
    /// then turns it off (such a worker stays in `sluice`).
    var isAsked: Bool { TraceExport.isAsked(endpoint: otelEndpoint) }

    /// Whether spans are exported at all.
    var isEnabled: Bool { TraceExport.isEnabled(endpoint: otelEndpoint) }

    /// Bootstraps the process's tracer (once, before anything that makes
    /// spans is created) and returns the exporter, a service to run beside
    /// the others; nil when no export was asked for.
    func bootstrap(serviceName: String, logger: Logger) throws -> (any Service)? {
        guard isEnabled else { return nil }
        let environment = ProcessInfo.processInfo.environment
        for name in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
            // swift-otel stops the process on a protocol it was built without: say so first.
            if let value = environment[name], !["http/protobuf", "http/json"].contains(value.lowercased()) {
                throw CLIError("\(name)=\(value): this sluice exports OTLP over HTTP only; use http/protobuf (the default) or http/json")
            }
        }
        var configuration = OTel.Configuration.default
        configuration.serviceName = serviceName
        configuration.metrics.enabled = false
        configuration.logs.enabled = false
        configuration.traces.enabled = true
        configuration.diagnosticLogger = .custom(logger)
        configuration.diagnosticLogLevel = .warning
        var overrides = environment
        if let otelEndpoint {
            // A base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is: spans go to its /v1/traces (given whole, it is kept).
            var base = otelEndpoint
            while base.hasSuffix("/") { base.removeLast() }
            overrides["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = base.hasSuffix("/v1/traces") ? base : base + "/v1/traces"
        }
        return try OTel.bootstrap(configuration: configuration, environment: overrides)
    }

    /// Runs `body` while `exporter` runs, then shuts the exporter down
    /// gracefully, which sends the spans still batched (for short commands).
    static func whileExporting<T: Sendable>(_ exporter: any Service, logger: Logger,
                                            _ body: @Sendable () async throws -> T) async throws -> T {
        let group = ServiceGroup(configuration: .init(services: [.init(service: exporter)], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let result: Result<T, any Error>
            do { result = .success(try await body()) } catch { result = .failure(error) }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return try result.get()
        }
    }
}
