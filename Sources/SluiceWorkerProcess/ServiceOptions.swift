public import ArgumentParser

/// Options of the long-running processes (`sluice worker`, `sluice
/// coordinator`): logging, metrics, the event key, and the hidden flag a
/// supervisor passes to its children.
public struct ServiceOptions: ParsableArguments, Sendable {
    @Option(help: "Serve Prometheus metrics on HOST:PORT (e.g. 127.0.0.1:9410) at /metrics.")
    public var metrics: String?
    @Option(help: ArgumentHelp("File holding the key that signs task outcomes (workers) and checks them (the coordinator); the same key for both. Default: $SLUICE_EVENT_KEY. With a key, the coordinator drops and counts unsigned or badly signed step outcomes.",
                               valueName: "path"))
    public var eventKeyFile: String?
    @Option(help: "Log level.")
    public var logLevel: LogLevel = .info
    /// Set by a supervisor (`--processes`, `sluice dev`) on the processes it runs.
    @Flag(help: .hidden) public var supervised = false

    public init() {}

    public func validate() throws {
        if let metrics { _ = try parseHostPort(metrics) }
    }

    /// Logs to standard error at the chosen level.
    public func bootstrapLogging() {
        CLILogging.start(level: logLevel.level)
    }
}
