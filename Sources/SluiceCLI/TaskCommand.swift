import ArgumentParser
import Foundation
import SluiceCore
import SluiceCoordinator
import SluiceRabbitMQ
import SluiceWorkflow
import SluiceAPI
import SluiceWorkerProcess

struct TaskCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "task",
        abstract: "Look up single tasks (through the coordinator's API), or revoke them (through the broker).",
        discussion: """
        `status`: only tracked tasks are known: enqueued with --track (`sluice enqueue --track`, \
        EnqueueOptions.track, "track": true in POST /v1/tasks, or a client's tracked queues). \
        The coordinator keeps each one's status for its --task-retention after it finishes. \
        `revoke`: any task, tracked or not.
        """,
        subcommands: [Status.self, Revoke.self])

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke tasks: workers dead-letter them (reason revoked) instead of running them.",
            discussion: """
            The revocation goes to the prefix's revocation stream, which every worker reads, \
            also workers started later and after a broker restart, for 7 days. A task that has \
            not started never runs: the worker that meets it dead-letters it with reason \
            `revoked` (`sluice dead list` shows it; `sluice dead replay` would meet the \
            revocation again). With --terminate, a task already running is cancelled as a time \
            limit cancels it: a handler that fails or gives up is dead as revoked; one that \
            finishes anyway has succeeded. Revoking a task that already ended, or an id that \
            never existed, changes nothing.
            """)
        @Argument(help: "The ids of the tasks to revoke.") var ids: [String]
        @Flag(help: "Also cancel the tasks that are running now.") var terminate = false
        @Option(help: "Why, for the dead letters' error message.") var reason: String?
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func validate() throws {
            guard !ids.isEmpty else { throw ValidationError("give at least one task id") }
            if let id = ids.first(where: { $0.isEmpty || $0.utf8.count > 255 }) {
                throw ValidationError("a task id has 1 to 255 bytes: \(id.prefix(40))")
            }
            if let reason, reason.utf8.count > 1000 { throw ValidationError("--reason has at most 1000 bytes") }
        }

        func run() async throws {
            let broker = try await connection.connect(name: "sluice task revoke")
            do {
                try await broker.revoke(ids, terminate: terminate, reason: reason)
            } catch let error as SluiceError {
                await broker.close()
                throw CLIError(error.message)
            }
            await broker.close()
            let unique = Array(Set(ids)).sorted()
            if json {
                printJSON(["revoked": unique, "terminate": terminate])
            } else {
                print("revoked \(unique.count) task\(unique.count == 1 ? "" : "s")\(terminate ? " (running ones are cancelled)" : "")")
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a tracked task: status (queued, running, retrying, succeeded, dead), attempt, times, worker, last error, result, progress.",
            discussion: """
            With --watch, a task the coordinator has not heard of yet (its `queued` event is on \
            its way, right after an enqueue) is waited for up to 10 s. \
            Exit status: 0 once it succeeded (or, without --watch, whatever its state), 1 if it \
            ended dead (with --watch), 2 if the coordinator does not know it.
            """)
        @Argument(help: "The task id.") var id: String
        @Flag(help: "Refresh every second until the task succeeds or ends dead.") var watch = false
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var api: APIOptions

        func run() async throws {
            let client = try api.client()
            let unknownUntil = ContinuousClock.now + .seconds(10)
            var seen = false, said = false
            while true {
                let task: TrackedTask
                do {
                    task = try await client.task(id)
                    seen = true
                } catch let error as CoordinatorClient.Failure where error.kind == .refused(status: 404, code: "not_found") {
                    if watch && !seen && ContinuousClock.now < unknownUntil {
                        if !said { FileHandle.standardError.write(Data("waiting for the coordinator to hear of \(id)...\n".utf8)) }
                        said = true
                        try await Task.sleep(for: .milliseconds(500))
                        continue
                    }
                    FileHandle.standardError.write(Data("\(error.description)\n".utf8))
                    throw ExitCode(2)
                }
                if json {
                    try printAPIJSON(task)
                } else {
                    if watch { print("\u{1B}[2J\u{1B}[H", terminator: "") }
                    print(Self.describe(task, now: Date()))
                }
                guard watch else { return }
                if task.status.isFinal { throw ExitCode(task.status == .succeeded ? 0 : 1) }
                try await Task.sleep(for: .seconds(1))
            }
        }

        static func describe(_ t: TrackedTask, now: Date) -> String {
            var lines = ["task \(t.id)  \(t.name)  queue \(t.queue)", "status: \(t.status.rawValue)  attempt \(t.attempt)"]
            func time(_ label: String, _ date: Date?) {
                guard let date else { return }
                lines.append("\(label): \(APICoding.formatDate(date))")
            }
            time("enqueued", t.enqueuedAt)
            time("started", t.startedAt)
            time("finished", t.finishedAt)
            if let start = t.startedAt {
                let end = t.finishedAt ?? now
                lines.append(String(format: "ran: %.3f s", max(0, end.timeIntervalSince(start))))
            }
            if let worker = t.worker { lines.append("worker: \(worker)") }
            if let progress = t.progress, t.status == .running {
                lines.append(String(format: "progress: %.0f%%", progress * 100) + (t.progressMessage.map { "  \($0)" } ?? ""))
            }
            if t.status == .retrying, let next = t.nextAttemptAt { time("next attempt", next) }
            if let reason = t.deadReason { lines.append("dead: \(reason)") }
            if t.errorType != nil || t.errorMessage != nil {
                lines.append("last error: \([t.errorType, t.errorMessage].compactMap { $0 }.joined(separator: ": "))")
            }
            if let result = t.result { lines.append("result: \(result.jsonText.prefix(2000))") }
            return lines.joined(separator: "\n")
        }
    }
}
