import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SluiceCore
import SluiceRabbitMQ
import SluiceWorker
import UnixSignals
import SluiceWorkerProcess

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run tasks from one or more queues until SIGTERM or Ctrl-C.",
        discussion: """
        Built-in tasks (no code needed): sluice.echo returns its arguments; sluice.sleep \
        {"seconds": 2} sleeps; sluice.fail {"times": 2} fails its first N attempts (always, \
        without "times"); sluice.crash ends the worker process at once (for testing redelivery).

        With --exec, every other task name runs a command: the JSON arguments on standard \
        input; SLUICE_TASK_ID, SLUICE_TASK_NAME, SLUICE_TASK_QUEUE and SLUICE_TASK_ATTEMPT in \
        the environment. Exit 0 succeeds with standard output as the result; exit 75 asks for \
        a retry; any other status fails the attempt (retried per the policy).

        On SIGTERM/SIGINT the worker stops taking tasks, lets running ones finish for \
        --shutdown-grace, then cancels the rest and returns them to the queue (a handler that \
        ignores cancellation gets one more grace period), and exits 0. Give a service manager a \
        stop timeout above twice the grace.

        --processes N runs N worker processes under this one: a crashed one is restarted with \
        backoff; SIGTERM drains them all; with --hard-time-limit, a process with a task running \
        past it is killed, so the broker redelivers the task (and dead-letters it at the delivery \
        limit if it keeps doing so). To scale further, run more workers anywhere: the broker \
        spreads tasks over every consumer, each taking at most --concurrency at a time.

        --metrics HOST:PORT serves Prometheus text at /metrics (with --processes, process i \
        listens on PORT+i).

        Worker processes (this one, or those a supervisor runs) run as sluice-worker, a binary \
        of the worker alone that needs less memory (idle: about 19 MiB against 34), when it is installed beside \
        sluice and no trace export is asked for (same pid, options and environment; \
        SLUICE_WORKER_IN_PROCESS=1 keeps them in sluice).
        """)

    @OptionGroup var worker: WorkerOptions
    @Option(help: "Run this many worker processes under a supervisor (restarts, SIGTERM forwarding, hard time limit).")
    var processes: Int?
    @Option(help: "Kill a worker process whose task runs longer than this (e.g. 10m); implies a supervisor (--processes 1 if not given).")
    var hardTimeLimit: DurationArgument?
    @Option(help: "With --processes: a task that crashed its worker process this many times while running alone (suspects of a crash run one at a time in a process of their own) is dead-lettered as crashed_worker.")
    var crashLimit: Int = 2
    /// The supervisor's process for suspects: it consumes the isolation queues, one task at a time.
    @Flag(help: .hidden) var isolation = false
    @OptionGroup var service: ServiceOptions
    @OptionGroup var tracing: TracingOptions
    @OptionGroup var connection: ConnectionOptions

    private var supervised: Bool { service.supervised }

    func validate() throws {
        if let processes { guard (1...256).contains(processes) else { throw ValidationError("--processes must be from 1 to 256") } }
        if let hardTimeLimit { guard hardTimeLimit.duration > .zero else { throw ValidationError("--hard-time-limit must be more than 0") } }
        if let metrics = service.metrics {
            let (_, port) = try parseHostPort(metrics)
            // One more port for the process that runs crash suspects.
            guard port + (processes ?? 1) <= 65535 else { throw ValidationError("--metrics: ports from \(port) do not fit \(processes ?? 1) processes") }
        }
        guard (1...100).contains(crashLimit) else { throw ValidationError("--crash-limit must be from 1 to 100") }
    }

    func run() async throws {
        // A dead child's pipe must not kill the supervisor that writes to it:
        // such writes fail with EPIPE instead.
        signal(SIGPIPE, SIG_IGN)
        if !supervised && (processes != nil || hardTimeLimit != nil) { return try await supervise() }
        if !supervised && !tracing.isAsked, let lean = LeanWorker.path() { LeanWorker.replaceThisProcess(with: lean) }
        service.bootstrapLogging()
        let logger = Logger(label: "sluice.worker")
        // Before the worker exists: it leaves out tracing when no tracer is bootstrapped.
        let exporter = try tracing.bootstrap(serviceName: "sluice-worker", logger: logger)
        try await WorkerProcess.run(worker, service: service, connection: connection, tracer: exporter,
                                    supervision: supervised ? Supervision(isolation: isolation, crashLimit: crashLimit) : nil)
    }

    /// Runs --processes children: this command again, without the
    /// supervisor's options, each with its own metrics port.
    private func supervise() async throws {
        service.bootstrapLogging()
        let logger = Logger(label: "sluice.worker.supervisor")
        let count = processes ?? 1
        let metricsBase = try service.metrics.map(parseHostPort)
        // The children run sluice-worker when it is there and no tracing is asked for (it exports none).
        let lean = tracing.isAsked ? nil : LeanWorker.path()
        var original = Array(CommandLine.arguments.dropFirst())
        if lean != nil, let command = original.firstIndex(of: "worker") { original.remove(at: command) }
        let arguments: @Sendable (Int) -> [String] = { [original] slot in
            var out: [String] = []
            var i = 0
            while i < original.count {
                let a = original[i]
                let name = a.split(separator: "=", maxSplits: 1).first.map(String.init) ?? a
                // --url goes to the children in their environment (it may hold a password).
                if ["--processes", "--hard-time-limit", "--metrics", "--url"].contains(name) {
                    i += a.contains("=") ? 1 : 2
                    continue
                }
                out.append(a)
                i += 1
            }
            if let (host, port) = metricsBase {
                let h = host.contains(":") ? "[\(host)]" : host
                out += ["--metrics", "\(h):\(port + slot)"]
            }
            // The slot after the others runs suspects of a crash, one at a time.
            return out + ["--supervised"] + (slot == count ? ["--isolation"] : [])
        }
        var environment: [String: String] = [:]
        if let url = connection.urlEnvironment { environment["SLUICE_URL"] = url }
        let supervisor = WorkerSupervisor(count: count, hardLimit: hardTimeLimit?.duration, crashLimit: crashLimit,
                                          logger: logger, executable: lean, environment: environment, arguments: arguments)
        logger.info("supervising worker processes", metadata: ["processes": "\(count)", "hard-time-limit": "\(hardTimeLimit?.description ?? "none")"])
        let status = await supervisor.run()
        if status != 0 { throw ExitCode(status) }
    }
}
