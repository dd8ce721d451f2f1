import ArgumentParser
import Logging
import SluiceCore
import SluiceWorkerProcess

/// `sluice-worker`: the worker of `sluice worker` in a binary of its own,
/// which links the worker's modules and nothing of the rest of the CLI, so
/// that a worker process stays small (docs/performance.md). `sluice worker`
/// runs it when it is installed beside `sluice`.
@main
struct SluiceWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice-worker",
        abstract: "Run tasks from one or more queues until SIGTERM or Ctrl-C (the worker of `sluice worker`, in a small binary).",
        discussion: """
        The same worker and options as `sluice worker`, which runs this binary when it sits beside \
        `sluice` (set SLUICE_WORKER_IN_PROCESS=1 to keep the worker inside `sluice`). What needs the \
        whole CLI stays there: --processes and --hard-time-limit (a supervisor of worker processes), \
        and exporting traces (--otel-endpoint, OTEL_EXPORTER_OTLP_ENDPOINT).

        Built-in tasks: sluice.echo, sluice.sleep {"seconds": 2}, sluice.fail {"times": 2}, \
        sluice.crash. With --exec, every other task runs a command (see `sluice worker --help`).
        """,
        version: SluiceVersion.current)

    @OptionGroup var worker: WorkerOptions
    @OptionGroup var service: ServiceOptions
    @OptionGroup var connection: ConnectionOptions
    /// What `sluice worker --processes` gives the processes it runs (see its help).
    @Option(help: .hidden) var crashLimit: Int = 2
    @Flag(help: .hidden) var isolation = false

    func validate() throws {
        guard (1...100).contains(crashLimit) else { throw ValidationError("--crash-limit must be from 1 to 100") }
    }

    func run() async throws {
        service.bootstrapLogging()
        if TraceExport.isEnabled(endpoint: nil) {
            Logger(label: "sluice.worker").warning("sluice-worker exports no trace spans; run `sluice worker` for that")
        }
        let supervision = service.supervised ? Supervision(isolation: isolation, crashLimit: crashLimit) : nil
        try await WorkerProcess.run(worker, service: service, connection: connection, supervision: supervision)
    }
}
