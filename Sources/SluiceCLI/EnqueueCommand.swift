import ArgumentParser
import Logging
import Tracing
import Foundation
import SluiceClient
import SluiceCore
import SluiceRabbitMQ
import SluiceWorkerProcess

struct EnqueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue",
        abstract: "Enqueue a task; prints its id once the broker confirmed it.",
        discussion: """
        Examples:
          sluice enqueue emails.send --queue emails --args '{"to":"a@b.c"}'
          sluice enqueue report.build --args @report.json --delay 5m
          echo '{"n":1}' | sluice enqueue sluice.echo --args - --count 1000
          sluice enqueue sluice.echo --args '{"x":1}' --wait --timeout 30s
          sluice enqueue reports.nightly --unique nightly-2026-12-04 --unique-for 6h

        With --unique, the task is enqueued only if no task with the same key holds \
        the key's lock: it is held from the enqueue until the task succeeds or is dead \
        (--unique-policy until-finished), or for all of --unique-for (window), and never \
        longer than --unique-for. Otherwise the id of the task that holds it is printed \
        and nothing is enqueued (--json says "enqueued": false). The lock lives on the \
        broker: it holds across producers on any machine and across restarts.

        With --wait, the command waits for the task's final outcome (retries do not \
        answer, only the last attempt), sent by the worker to a reply queue of this \
        command, and prints the result's JSON (null when the handler returned nothing). \
        Exit status: 0 succeeded; 1 dead (the reason and error on standard error) or \
        another error; 124 no outcome within --timeout (the task may still run later).
        """)

    @Argument(help: "The task name, as registered on the workers.")
    var name: String
    @Option(help: "The queue.")
    var queue: String = "default"
    @Option(help: "Priority level: high, normal or low. Each level of a queue is a queue of its own (<queue>~high, <queue>~low); workers started with --priorities take from all of them, higher levels first by weight.")
    var priority: PriorityArgument?
    @Option(help: "JSON arguments: literal JSON, @file, or - for standard input.")
    var args: String = "{}"
    @Option(help: "Start no earlier than this from now (500ms, 30s, 2m, 1h).")
    var delay: DurationArgument?
    @Option(help: "Runs allowed in all.")
    var attempts: Int?
    @Option(help: "Idempotency key handed to the handler.")
    var key: String?
    @Option(help: "Dead-letter instead of starting after this long from now.")
    var deadline: DurationArgument?
    @Option(help: "W3C trace context (00-<trace id>-<span id>-<flags>) the task carries; a handler's own tasks join it.")
    var traceparent: String?
    @Option(help: "Enqueue this many copies (pipelined: batches of 500, four at a time over two connections past the first batch; one at a time on one connection with --order-key), with progress and a rate.")
    var count: Int = 1
    @Flag(help: "Wait for the task's final outcome and print its result (exit 1 if it ended dead, 124 on timeout).")
    var wait = false
    @Option(help: "With --wait: how long to wait for the outcome (500ms, 30s, 2m, 1h).")
    var timeout: DurationArgument = "60s"
    @Flag(help: "Have the coordinator keep the task's status, attempts, error and result: see `sluice task status ID` (kept for the coordinator's --task-retention).")
    var track = false
    @Option(help: "A unique key: enqueue nothing while a task with this key holds its lock; print that task's id instead.")
    var unique: String?
    @Option(name: .customLong("unique-for"), help: "With --unique: the longest the key's lock is held (1s to 24d).")
    var uniqueFor: DurationArgument = "1h"
    @Option(name: .customLong("unique-policy"), help: "With --unique: until-finished (the key is free again once the task succeeds or is dead) or window (held for all of --unique-for).")
    var uniquePolicy: String = UniqueKey.Policy.untilFinished.rawValue
    @Option(name: .customLong("order-key"), help: "Tasks with the same order key run one at a time, in enqueue order (workers of the queue need --ordered); not with --delay or --priority.")
    var orderKey: String?
    @Flag(help: "Print JSON.")
    var json = false
    @OptionGroup var tracing: TracingOptions
    @OptionGroup var connection: ConnectionOptions

    /// The unique key the options describe, if any.
    private var uniqueKey: UniqueKey? {
        guard let unique, let policy = UniqueKey.Policy(rawValue: uniquePolicy) else { return nil }
        return UniqueKey(unique, for: uniqueFor.duration, policy: policy)
    }

    func validate() throws {
        guard UniqueKey.Policy(rawValue: uniquePolicy) != nil else {
            throw ValidationError("--unique-policy must be one of: \(UniqueKey.Policy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let key = uniqueKey {
            do throws(SluiceError) { try key.validate() } catch { throw ValidationError("--unique: \(error.message)") }
            if wait { throw ValidationError("--unique cannot be given with --wait: a duplicate's outcome goes to whoever enqueued the first") }
            if count != 1 { throw ValidationError("--unique enqueues one task; it cannot be given with --count") }
        }
        if let orderKey {
            do throws(SluiceError) { try Topology.validateOrderKey(orderKey) } catch { throw ValidationError("--order-key: \(error.message)") }
            if delay != nil { throw ValidationError("--order-key cannot be given with --delay: the task would lose its place behind its key's earlier tasks") }
            if let priority, priority.priority != .normal { throw ValidationError("--order-key cannot be given with --priority") }
        }
        guard count >= 1 else { throw ValidationError("--count must be 1 or more") }
        if wait, count != 1 { throw ValidationError("--wait waits for one task; it cannot be given with --count") }
        guard timeout.duration > .zero else { throw ValidationError("--timeout must be more than zero") }
        if let attempts, attempts < 1 { throw ValidationError("--attempts must be 1 or more") }
        if let traceparent, TraceParent(traceparent) == nil {
            throw ValidationError("--traceparent must be a W3C trace context: 00-<32 hex>-<16 hex>-<2 hex>")
        }
        do { try Topology.validateQueue(queue) } catch let error as SluiceError { throw ValidationError("--queue: \(error.message)") }
    }

    func run() async throws {
        let logger = Logger(label: "sluice.enqueue")
        guard let exporter = try tracing.bootstrap(serviceName: "sluice-enqueue", logger: logger) else {
            return try await enqueue(traceparent: traceparent)
        }
        // One producer span (a child of --traceparent, if given) that the task names as its parent.
        let parent = TraceParent.context(continuing: traceparent)
        let (name, queue) = (self.name, self.queue)
        try await TracingOptions.whileExporting(exporter, logger: logger) {
            try await withSpan("enqueue \(name)", context: parent, ofKind: .producer) { span in
                span.attributes["sluice.task.queue"] = queue
                try await enqueue(traceparent: TraceParent(context: span.context)?.description ?? traceparent)
            }
        }
    }

    func enqueue(traceparent: String?) async throws {
        let arguments = try readArguments(args)
        var options = EnqueueOptions(queue: queue, maxAttempts: attempts, idempotencyKey: key, traceparent: traceparent)
        options.priority = priority?.priority
        options.orderKey = orderKey
        options.track = track
        options.delay = delay?.duration
        if let deadline { options.deadline = Date().addingTimeInterval(deadline.duration.timeInterval) }
        // More than a batch of copies, batches in flight: a connection more for
        // publishing, as a producer at volume has (--count excludes --wait and --unique).
        let batch = 500
        let ordered = orderKey != nil
        let publishingConnections = count > batch && !ordered ? 1 : 0
        let broker = try await connection.connect(name: "sluice enqueue", publishingConnections: publishingConnections)
        defer { Task { await broker.close() } }
        if wait {
            // The reply queue outlives this command only briefly; it is deleted at the end anyway.
            let client = TaskClient(broker: broker, replyQueueExpiry: timeout.duration + .seconds(60))
            let handle = try await client.enqueueForResult(name: name, json: arguments, options: options)
            if !json { standardError("enqueued \(handle.id); waiting up to \(timeout) for its outcome...") }
            let status = await printOutcome(of: handle)
            await client.close()
            await broker.close()
            if status != 0 { throw ExitCode(status) }
            return
        }
        let client = TaskClient(broker: broker)
        if let key = uniqueKey {
            options.unique = key
            let outcome = try await client.enqueueUnique(name: name, json: arguments, options: options)
            if json {
                printJSON(["id": outcome.id, "name": name, "queue": queue, "enqueued": outcome.enqueued])
            } else {
                print(outcome.id)
                if !outcome.enqueued { standardError("nothing enqueued: task \(outcome.id) holds the unique key") }
            }
            await broker.close()
            return
        }
        if count == 1 {
            let id = try await client.enqueue(name: name, json: arguments, options: options)
            if json { printJSON(["id": id, "name": name, "queue": queue]) } else { print(id) }
            await broker.close()
            return
        }
        let start = ContinuousClock.now
        // After the first batch, a batch per publisher channel (two per
        // connection) in flight; with an order key one, so that batches land in order.
        let copies = CopyBatches(count: count, batch: batch, inFlight: ordered ? 1 : 2 * (1 + publishingConnections))
        let progress = isatty(STDERR_FILENO) == 1
        let request = TaskClient.Request(name: name, arguments: arguments, options: options)
        let summary = await copies.run(send: { n in
            let results = try await client.enqueue(batch: Array(repeating: request, count: n))
            let ok = results.count { if case .success = $0 { true } else { false } }
            return .init(enqueued: ok, failed: results.count - ok)
        }, progress: { settled in
            guard progress else { return }
            let pct = settled * 100 / count
            FileHandle.standardError.write(Data("\r[\(String(repeating: "#", count: pct / 5))\(String(repeating: " ", count: 20 - pct / 5))] \(settled)/\(count)".utf8))
        })
        if progress { FileHandle.standardError.write(Data("\n".utf8)) }
        let done = summary.enqueued, failed = summary.failed
        if let stoppedBy = summary.stoppedBy { standardError("error: stopped enqueueing: \(stoppedBy)") }
        let elapsed = ContinuousClock.now - start
        let seconds = elapsed.timeInterval
        let rate = Double(done) / max(seconds, 1e-9)
        if json {
            printJSON(["enqueued": done, "failed": failed, "seconds": seconds, "tasks_per_second": rate.rounded()])
        } else {
            print("enqueued \(done) tasks (\(failed) failed) in \(String(format: "%.2f", seconds)) s: \(Int(rate)) tasks/s")
        }
        await broker.close()
        if failed > 0 { throw ExitCode(1) }
    }

    /// Waits for the outcome, prints it, and returns the exit status.
    private func printOutcome(of handle: TaskHandle) async -> Int32 {
        do {
            let result = try await handle.result(timeout: timeout.duration)
            if json {
                var object: [String: Any] = ["id": handle.id, "name": name, "queue": queue, "status": "succeeded", "attempt": result.attempt]
                object["result"] = result.json.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8), options: .fragmentsAllowed) } ?? NSNull()
                if let note = result.note { object["note"] = note }
                printJSON(object)
            } else {
                print(result.json ?? "null")
                if let note = result.note { standardError("note: \(note)") }
            }
            return 0
        } catch let failed as TaskFailed {
            if json {
                printJSON(["id": handle.id, "name": name, "queue": queue, "status": "dead", "attempt": failed.attempt,
                           "reason": failed.reason?.rawValue ?? NSNull(), "errorType": failed.errorType ?? NSNull(),
                           "errorMessage": failed.errorMessage ?? NSNull()] as [String: Any])
            } else {
                standardError("dead: \(failed)")
            }
            return 1
        } catch let error as SluiceError where error.code == .timedOut {
            if json {
                printJSON(["id": handle.id, "name": name, "queue": queue, "status": "timed_out"])
            } else {
                standardError("no outcome of task \(handle.id) within \(timeout); it may still run (see sluice dead list \(queue))")
            }
            return 124
        } catch {
            standardError("waiting for the outcome failed: \(error)")
            return 1
        }
    }
}
