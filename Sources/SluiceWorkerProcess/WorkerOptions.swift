public import ArgumentParser
import SluiceCore
public import SluiceWorker

/// What a worker process runs and how: the options `sluice worker` and
/// `sluice-worker` share.
public struct WorkerOptions: ParsableArguments, Sendable {
    @Option(name: .customLong("queue"), help: "A queue to consume (repeat for several).")
    public var queues: [String] = ["default"]
    @Option(help: "Tasks run at once.")
    public var concurrency: Int = 10
    @Option(help: "Command to run for tasks without a built-in handler (via /bin/sh -c).")
    public var exec: String?
    @Option(help: "Soft time limit per task (e.g. 30s).")
    public var timeLimit: DurationArgument?
    @Option(help: "How long running tasks may finish after SIGTERM.")
    public var shutdownGrace: DurationArgument = "30s"
    @Option(help: "Runs allowed per task unless the task says otherwise.")
    public var maxAttempts: Int = 5
    @Option(help: "First retry delay; later ones double (e.g. 1s).")
    public var retryBase: DurationArgument = "1s"
    @Option(help: "Longest retry delay.")
    public var retryMax: DurationArgument = "10m"
    @Option(help: "Largest task body accepted (bytes, or with KiB, MiB); larger ones are dead-lettered.")
    public var maxBodyBytes = ByteSize(bytes: 1 << 20)
    @Flag(help: "Also publish a `started` event per task (outcome events always carry the wait and run time).")
    public var startedEvents = false
    @Flag(help: "Consume every priority level of each queue (<queue>~high, <queue>, <queue>~low): while several levels have work, starts are shared by --priority-weights; a level alone with work gets every slot.")
    public var priorities = false
    @Option(help: "With --priorities: the shares of HIGH,NORMAL,LOW while several levels have work.")
    public var priorityWeights: String = "6,3,1"
    @Option(help: "Unacknowledged tasks the broker may send ahead per queue (or level); default: --concurrency, twice it with --priorities. More keeps slots busy between an ack and the next delivery; fewer leaves more for other workers.")
    public var prefetch: Int?
    @Option(name: .customLong("rate-limit"), help: ArgumentHelp(
        "Starts per second of a task across all workers of the prefix, as TASK=RATE (e.g. emails.send=100/s, or per m or h; repeat for several).",
        discussion: "Every worker with the same limit takes an equal share (live workers are counted from heartbeats, so shares follow workers that join, stop or die within about 3 s); tasks over the limit wait in the queue. Put a limited task on a queue of its own: while a worker waits to start it, up to --prefetch deliveries of its queue wait in the worker."))
    public var rateLimits: [String] = []
    @Option(name: .customLong("queue-rate-limit"), help: "Starts per second from a queue (all its levels) across all workers of the prefix, as QUEUE=RATE (e.g. emails=50/s; repeat for several).")
    public var queueRateLimits: [String] = []
    @Flag(help: "Also run each queue's ordered tasks (enqueued with an order key): one at a time per key, in enqueue order, across all workers; failed attempts retry in place.")
    public var ordered = false

    public init() {}

    public func validate() throws {
        guard concurrency >= 1 else { throw ValidationError("--concurrency must be 1 or more") }
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

    /// The worker's configuration from these options.
    public func configuration() throws -> Worker.Configuration {
        let policy = RetryPolicy(maxAttempts: maxAttempts, baseMilliseconds: retryBase.milliseconds, capMilliseconds: retryMax.milliseconds)
        var configuration = Worker.Configuration(
            queues: queues, concurrency: concurrency, retryPolicy: policy, maxBodyBytes: maxBodyBytes.bytes,
            timeLimit: timeLimit?.duration, shutdownGrace: shutdownGrace.duration,
            publishStartedEvents: startedEvents)
        if priorities { configuration.priorities = try PriorityWeights(parsing: priorityWeights) }
        configuration.prefetch = prefetch
        configuration.rateLimits = try parsedRateLimits()
        configuration.ordered = ordered
        return configuration
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
}
