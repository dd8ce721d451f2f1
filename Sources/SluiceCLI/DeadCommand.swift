import ArgumentParser
import Foundation
import SluiceClient
import SluiceCore
import SluiceRabbitMQ
import SluiceWire
import SluiceWorkerProcess

struct DeadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead",
        abstract: "List, show, replay and purge dead tasks.",
        subcommands: [List.self, Show.self, Replay.self, Purge.self])

    /// A dead queue belongs to a queue, not to one of its levels.
    static func checkQueue(_ queue: String) throws {
        do throws(SluiceError) { try DeadLetters.validate(queue: queue) } catch { throw ValidationError(error.message) }
    }

    /// A dead task as `--json` prints it (these keys predate the API's).
    static func json(_ task: DeadTask) -> [String: Any] {
        var j: [String: Any] = ["id": task.id, "name": task.name, "reason": task.reason, "attempt": task.attempt,
                                "error": task.error ?? "", "arguments": task.arguments]
        if let deadAt = task.deadAt { j["dead_at"] = ISO8601DateFormatter().string(from: deadAt) }
        if let t = task.errorType { j["error_type"] = t }
        if let w = task.worker { j["worker"] = w }
        return j
    }

    /// The CLI's words for a missing dead queue.
    static func run<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as SluiceError where error.code == .notFound {
            throw CLIError(error.message)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the tasks in a queue's dead queue (read-only).")
        @Argument(help: "The queue.") var queue: String
        @Option(help: "Show at most this many.") var limit: Int = 100
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func validate() throws { try DeadCommand.checkQueue(queue) }

        func run() async throws {
            let broker = try await connection.connect(name: "sluice dead list")
            let listed = try await DeadCommand.run { try await DeadLetters(broker: broker).list(queue: queue, limit: limit) }
            await broker.close()
            if json {
                printJSON(listed.tasks.map(DeadCommand.json))
            } else if listed.tasks.isEmpty {
                print("no dead tasks in \(queue)")
            } else {
                print("ID  NAME  REASON  ATTEMPT  ERROR")
                for task in listed.tasks {
                    print("\(task.id)  \(task.name)  \(task.reason)  attempt \(task.attempt)  \((task.error ?? "").prefix(60))")
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one dead task with all its headers.")
        @Argument(help: "The queue.") var queue: String
        @Argument(help: "The task id.") var id: String
        @OptionGroup var connection: ConnectionOptions

        func validate() throws { try DeadCommand.checkQueue(queue) }

        func run() async throws {
            let broker = try await connection.connect(name: "sluice dead show")
            let found = try await DeadCommand.run { try await DeadLetters(broker: broker).find(queue: queue, id: id) }
            await broker.close()
            guard let task = found else { throw CLIError("no dead task \(id) in \(queue)") }
            var j = DeadCommand.json(task)
            j["headers"] = task.headers
            printJSON(j)
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put dead tasks back on their work queue.",
            discussion: "Each task is re-enqueued (confirmed) before it leaves the dead queue, so an interrupted replay loses nothing.")
        @Argument(help: "The queue.") var queue: String
        @Option(help: "Replay this task id (repeat for several).") var id: [String] = []
        @Option(help: "Replay the dead tasks with this reason (as `dead list` shows it, e.g. max_attempts).") var reason: String?
        @Flag(help: "Replay every dead task.") var all = false
        @Flag(help: "Start the attempt count again at 1.") var resetAttempts = false
        @OptionGroup var connection: ConnectionOptions

        func validate() throws {
            try DeadCommand.checkQueue(queue)
            guard [all, !id.isEmpty, reason != nil].filter({ $0 }).count == 1 else {
                throw ValidationError("give one of --id ID (one or more), --reason REASON or --all")
            }
        }

        func run() async throws {
            let broker = try await connection.connect(name: "sluice dead replay")
            let wanted = Set(id)
            let replayed = try await DeadCommand.run {
                try await DeadLetters(broker: broker).replay(queue: queue, all ? .all : reason.map { .reason($0) } ?? .ids(wanted),
                                                     resetAttempts: resetAttempts)
            }
            await broker.close()
            print("replayed \(replayed.count) task\(replayed.count == 1 ? "" : "s") to \(queue)")
            let missing = wanted.subtracting(replayed)
            if !missing.isEmpty { throw CLIError("not found in the dead queue: \(missing.sorted().joined(separator: ", "))") }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete every task in a queue's dead queue.")
        @Argument(help: "The queue.") var queue: String
        @OptionGroup var connection: ConnectionOptions

        func validate() throws { try DeadCommand.checkQueue(queue) }

        func run() async throws {
            let broker = try await connection.connect(name: "sluice dead purge")
            let n = try await DeadCommand.run { try await DeadLetters(broker: broker).purge(queue: queue) }
            await broker.close()
            print("purged \(n) dead task\(n == 1 ? "" : "s") from \(queue)")
        }
    }
}
