import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SluiceCore
import SluiceRabbitMQ
import SluiceWorker
import UnixSignals

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
        """)

    @Option(name: .customLong("queue"), help: "A queue to consume (repeat for several).")
    var queues: [String] = ["default"]
    @Option(help: "Tasks run at once.")
    var concurrency: Int = 10
    @Option(help: "Command to run for tasks without a built-in handler (via /bin/sh -c).")
    var exec: String?
    @Option(help: "Soft time limit per task (e.g. 30s).")
    var timeLimit: DurationArgument?
    @Option(help: "How long running tasks may finish after SIGTERM.")
    var shutdownGrace: DurationArgument = "30s"
    @Option(help: "Runs allowed per task unless the task says otherwise.")
    var maxAttempts: Int = 5
    @Option(help: "First retry delay; later ones double (e.g. 1s).")
    var retryBase: DurationArgument = "1s"
    @Option(help: "Longest retry delay.")
    var retryMax: DurationArgument = "10m"
    @Option(help: "Largest task body accepted (bytes, or with KiB, MiB); larger ones are dead-lettered.")
    var maxBodyBytes = ByteSize(bytes: 1 << 20)
    @Flag(help: "Also publish a `started` event per task (outcome events always carry the wait and run time).")
    var startedEvents = false
    @Option(help: "Run this many worker processes under a supervisor (restarts, SIGTERM forwarding, hard time limit).")
    var processes: Int?
    @Option(help: "Kill a worker process whose task runs longer than this (e.g. 10m); implies a supervisor (--processes 1 if not given).")
    var hardTimeLimit: DurationArgument?
    @Option(help: "With --processes: a task that crashed its worker process this many times while running alone (suspects of a crash run one at a time in a process of their own) is dead-lettered as crashed_worker.")
    var crashLimit: Int = 2
    @Flag(help: "Consume every priority level of each queue (<queue>~high, <queue>, <queue>~low): while several levels have work, starts are shared by --priority-weights; a level alone with work gets every slot.")
    var priorities = false
    @Option(help: "With --priorities: the shares of HIGH,NORMAL,LOW while several levels have work.")
    var priorityWeights: String = "6,3,1"
    @Option(help: "Unacknowledged tasks the broker may send ahead per queue (or level); default: --concurrency, twice it with --priorities. More keeps slots busy between an ack and the next delivery; fewer leaves more for other workers.")
    var prefetch: Int?
    @Option(name: .customLong("rate-limit"), help: ArgumentHelp(
        "Starts per second of a task across all workers of the prefix, as TASK=RATE (e.g. emails.send=100/s, or per m or h; repeat for several).",
        discussion: "Every worker with the same limit takes an equal share (live workers are counted from heartbeats, so shares follow workers that join, stop or die within about 3 s); tasks over the limit wait in the queue. Put a limited task on a queue of its own: while a worker waits to start it, up to --prefetch deliveries of its queue wait in the worker."))
    var rateLimits: [String] = []
    @Option(name: .customLong("queue-rate-limit"), help: "Starts per second from a queue (all its levels) across all workers of the prefix, as QUEUE=RATE (e.g. emails=50/s; repeat for several).")
    var queueRateLimits: [String] = []
    @Flag(help: "Also run each queue's ordered tasks (enqueued with an order key): one at a time per key, in enqueue order, across all workers; failed attempts retry in place.")
    var ordered = false
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
        guard concurrency >= 1 else { throw ValidationError("--concurrency must be 1 or more") }
        guard (1...100).contains(crashLimit) else { throw ValidationError("--crash-limit must be from 1 to 100") }
        guard maxAttempts >= 1 else { throw ValidationError("--max-attempts must be 1 or more") }
        for q in queues {
            do { try Topology.validateQueue(q) } catch let error as SluiceError { throw ValidationError("--queue: \(error.message)") }
        }
        if let prefetch { guard (1...65535).contains(prefetch) else { throw ValidationError("--prefetch must be from 1 to 65535") } }
        _ = try parsedRateLimits()
        do { _ = try PriorityWeights(parsing: priorityWeights) } catch let error as SluiceError {
            throw ValidationError("--priority-weights: \(error.message)")
        }
    }

    func run() async throws {
        // A --exec child that exits without reading its input must not kill
        // the worker, nor a dead child's pipe the supervisor that writes to
        // it: such writes fail with EPIPE instead.
        signal(SIGPIPE, SIG_IGN)
        if !supervised && (processes != nil || hardTimeLimit != nil) { return try await supervise() }
        if supervised { SupervisedChild.resetSignals() }
        service.bootstrapLogging()
        let logger = Logger(label: "sluice.worker")
        let policy = RetryPolicy(maxAttempts: maxAttempts, baseMilliseconds: milliseconds(retryBase.duration),
                                 capMilliseconds: milliseconds(retryMax.duration))
        // Before the worker exists: it leaves out tracing when no tracer is bootstrapped.
        let exporter = try tracing.bootstrap(serviceName: "sluice-worker", logger: logger)
        var registry = BuiltinTasks.registry()
        if let exec { registry.fallback = ExecHandler(command: exec, traced: exporter != nil).handle }
        var configuration = Worker.Configuration(
            queues: queues, concurrency: concurrency, retryPolicy: policy, maxBodyBytes: maxBodyBytes.bytes,
            timeLimit: timeLimit?.duration, shutdownGrace: shutdownGrace.duration,
            publishStartedEvents: startedEvents)
        configuration.eventSigner = try eventSigner(keyFile: service.eventKeyFile)
        if priorities { configuration.priorities = try PriorityWeights(parsing: priorityWeights) }
        configuration.prefetch = prefetch
        configuration.rateLimits = try parsedRateLimits()
        configuration.ordered = ordered
        if supervised {
            configuration.taskReporter = { report in
                switch report {
                case .started(let id): SupervisedChild.report("started", taskID: id)
                case .finished(let id): SupervisedChild.report("finished", taskID: id)
                }
            }
            let isolation = self.isolation, crashLimit = self.crashLimit
            configuration.admission = { task in
                CrashVerdicts.shared.admission(task, inIsolation: isolation, crashLimit: crashLimit)
            }
            if isolation {
                configuration.consumesIsolationQueues = true
                configuration.concurrency = 1
                // Suspects run one at a time and rarely: no share of the limits.
                configuration.rateLimits = []
            }
            await SupervisedChild.listenToSupervisor()
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
        if let exporter { services.insert(.init(service: exporter), at: 0) }
        let group = ServiceGroup(configuration: .init(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        await broker.close()
    }

    /// Runs --processes children: this command again, without the
    /// supervisor's options, each with its own metrics port.
    private func supervise() async throws {
        service.bootstrapLogging()
        let logger = Logger(label: "sluice.worker.supervisor")
        let count = processes ?? 1
        let metricsBase = try service.metrics.map(parseHostPort)
        let original = Array(CommandLine.arguments.dropFirst())
        let arguments: @Sendable (Int) -> [String] = { slot in
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
                                          logger: logger, environment: environment, arguments: arguments)
        logger.info("supervising worker processes", metadata: ["processes": "\(count)", "hard-time-limit": "\(hardTimeLimit?.description ?? "none")"])
        let status = await supervisor.run()
        if status != 0 { throw ExitCode(status) }
    }

    /// --rate-limit and --queue-rate-limit.
    private func parsedRateLimits() throws -> [RateLimit] {
        var limits: [RateLimit] = []
        for (texts, queue, option) in [(rateLimits, false, "--rate-limit"), (queueRateLimits, true, "--queue-rate-limit")] {
            for text in texts {
                do throws(SluiceError) { limits.append(try RateLimit.parse(text, queue: queue)) } catch {
                    throw ValidationError("\(option): \(error.message)")
                }
            }
        }
        return limits
    }

    private func milliseconds(_ d: Duration) -> Int {
        Int(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000)
    }
}

