import ArgumentParser
import Foundation
import SluiceCoordinator
import SluiceCore
import SluiceMonitor
import SluiceRabbitMQ
import SluiceWorkflow
import Synchronization
import SluiceAPI
import SluiceWorkerProcess

struct TopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "A full-screen live view: queues with rate sparklines, workers, workflow runs by state, recent failures.",
        discussion: """
        Refreshes every second. Press q to quit (Ctrl-C works too); the terminal is restored \
        either way. Queue rates need RabbitMQ's management API (see --management); workflow \
        runs need the coordinator's API (--api), and are left out when it does not answer.
        """)

    @Option(help: "Refresh interval.")
    var interval: DurationArgument = "1s"
    @OptionGroup var managementOptions: ManagementOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var connection: ConnectionOptions

    func validate() throws { guard interval.duration >= .milliseconds(100) else { throw ValidationError("--interval must be at least 100ms") } }

    func run() async throws {
        let broker = try await connection.connect(name: "sluice top")
        let collector = QueueCollector(broker: broker, management: try managementOptions.client(connection))
        let events = try await EventWatch(broker: broker)
        await events.ping()
        let apiClient = try? api.client()
        let pause = interval.duration
        let screen = Screen()
        screen.enter()
        // Restored first thing after the loop, and on any error too.
        var restored = false
        defer { if !restored { screen.leave() } }
        let keys = KeyReader()
        try await untilInterrupted {
            var history: [String: [Double]] = [:]
            while !Task.isCancelled {
                let overview = await collector.collect(known: events.workerQueues(), waits: events.recentWaits(),
                                                       newestTaken: events.newestTaken())
                for row in overview.queues {
                    history[row.queue, default: []].append(row.ackRate ?? row.deliverRate ?? 0)
                    if history[row.queue]!.count > 60 { history[row.queue]!.removeFirst() }
                }
                let runs = await Self.runCounts(apiClient)
                screen.draw(Self.lines(overview: overview, history: history, workers: events.workers(),
                                       runs: runs, progress: events.inProgress(limit: 6), failures: events.recentFailures(limit: 8),
                                       width: screen.width))
                if await keys.waitForQuit(timeout: pause) { return }
            }
        }
        screen.leave()
        restored = true
        await events.stop()
        await broker.close()
    }

    /// Runs per state from the coordinator's `/v1/stats`, or nil when it does not answer.
    static func runCounts(_ client: CoordinatorClient?) async -> [(String, Int)]? {
        guard let client, let stats = try? await client.stats() else { return nil }
        return RunState.Status.allCases.map { ($0.rawValue, stats.runs[$0.rawValue] ?? 0) }
    }

    static func lines(overview: QueueOverview, history: [String: [Double]], workers: [WorkerRoster.Entry], runs: [(String, Int)]?,
                      progress: [TaskEvent] = [], failures: [TaskEvent], width: Int) -> [String] {
        let p = Rendering.Palette(enabled: true)
        var out: [String] = []
        let clock = ISO8601DateFormatter().string(from: overview.at)
        out.append(p.bold("sluice top") + "  prefix \(overview.prefix)  \(clock)  " + p.dim("q quits"))
        out.append("")
        let queueRows = overview.queues.map { r -> [String] in
            [r.queue, Rendering.count(r.ready), Rendering.age(r), Rendering.count(r.unacknowledged), Rendering.count(r.consumers),
             Rendering.rate(r.publishRate), Rendering.rate(r.ackRate), (r.dead ?? 0) > 0 ? p.red(String(r.dead!)) : Rendering.count(r.dead),
             Rendering.duration(milliseconds: r.recentWaitMilliseconds), Rendering.replicas(r, palette: p),
             r.leader.map(Rendering.node) ?? "-", p.cyan(Rendering.sparkline(history[r.queue] ?? [], width: 30))]
        }
        out += Rendering.table(["QUEUE", "READY", "OLDEST", "UNACKED", "CONSUMERS", "PUBLISH", "ACK", "DEAD", "WAIT", "ONLINE", "LEADER", "ACK RATE (last 30)"],
                               queueRows, right: [1, 2, 3, 4, 5, 6, 7, 8, 9], palette: p)
        var ladder = "delay ladder: \(Rendering.count(overview.delayed)) waiting"
        if !overview.ratesAvailable { ladder += p.yellow("   rates unavailable: \(overview.ratesUnavailableReason ?? "no management API")") }
        out.append(ladder)
        out.append("")
        out += WorkersCommand.render(workers, palette: p)
        out.append("")
        if let runs {
            out.append(p.bold("WORKFLOW RUNS  ") + runs.map { "\($0.0) \($0.1)" }.joined(separator: "  "))
        } else {
            out.append(p.bold("WORKFLOW RUNS  ") + p.dim("coordinator API not reachable (--api)"))
        }
        out.append("")
        out.append(p.bold("IN PROGRESS"))
        if progress.isEmpty { out.append(p.dim("no task has reported progress in the last minute")) }
        for e in progress {
            let fraction = e.progress ?? 0
            let filled = Int((fraction * 20).rounded())
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: 20 - filled)
            out.append("\(p.cyan(bar)) \(String(format: "%3.0f%%", fraction * 100))  \(e.queue)  \(e.taskName)  \(e.taskID.prefix(8))  \(e.progressMessage ?? "")")
        }
        out.append("")
        out.append(p.bold("RECENT FAILURES"))
        if failures.isEmpty { out.append(p.dim("none seen since start")) }
        let time = DateFormatter()
        time.dateFormat = "HH:mm:ss"
        for f in failures {
            let what = f.kind == .dead ? p.red("dead (\(f.deadReason?.rawValue ?? "?"))") : p.yellow("retrying")
            out.append("\(time.string(from: f.at))  \(what)  \(f.queue)  \(f.taskName)  attempt \(f.attempt)  \(f.errorMessage ?? "")")
        }
        return out.map { truncate($0, to: width) }
    }

    /// Cuts a line to `width` visible characters, keeping colour codes intact.
    static func truncate(_ line: String, to width: Int) -> String {
        guard Rendering.visibleWidth(line) > width else { return line }
        var out = "", visible = 0, inEscape = false
        for ch in line {
            if inEscape { out.append(ch); if ch == "m" { inEscape = false }; continue }
            if ch == "\u{1B}" { inEscape = true; out.append(ch); continue }
            if visible >= width { continue }
            out.append(ch)
            visible += 1
        }
        return out + "\u{1B}[0m"
    }
}

