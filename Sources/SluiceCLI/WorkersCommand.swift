import ArgumentParser
import Foundation
import SluiceCore
import SluiceMonitor
import SluiceRabbitMQ
import SluiceWorkerProcess

struct WorkersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workers",
        abstract: "Show live workers from their heartbeats: host, pid, queues, concurrency, in flight, processed, failed, uptime, version.",
        discussion: """
        Workers beat every 5 s on the events exchange and answer a ping at once; this command \
        pings, listens for --wait, and prints what it heard. A worker silent for three of its \
        intervals is shown as gone (killed, or cut off from the broker); one that exited \
        gracefully, as stopped. With --watch the list refreshes until Ctrl-C.
        """)

    @Option(help: "How long to listen for answers.")
    var wait: DurationArgument = "1500ms"
    @OptionGroup var output: SnapshotOptions
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let broker = try await connection.connect(name: "sluice workers")
        let events = try await EventWatch(broker: broker, outcomes: false)
        await events.ping()
        try await Task.sleep(for: wait.duration)
        let palette = output.palette
        try await printSnapshots(watch: output.watch, json: output.json, every: .seconds(1)) {
            let list = events.workers()
            return (list, Self.render(list, palette: palette))
        }
        await events.stop()
        await broker.close()
    }

    static func render(_ list: [WorkerRoster.Entry], palette: Rendering.Palette) -> [String] {
        guard !list.isEmpty else { return [palette.dim("no workers heard from (is one running with the same --url and --prefix?)")] }
        let rows = list.map { e -> [String] in
            let b = e.heartbeat
            let status: String
            switch e.status {
            case "running": status = palette.green("running")
            case "gone": status = palette.red("gone \(Int(e.silentSeconds))s")
            default: status = palette.yellow(e.status)
            }
            return [b.worker, status, b.queues.joined(separator: ","), String(b.concurrency), String(b.inFlight), String(b.processed),
                    b.failed > 0 ? palette.red(String(b.failed)) : "0", Rendering.duration(milliseconds: e.uptimeSeconds * 1000), b.version ?? "-"]
        }
        return Rendering.table(["WORKER", "STATUS", "QUEUES", "CONC", "IN FLIGHT", "PROCESSED", "FAILED", "UPTIME", "VERSION"], rows,
                               right: [3, 4, 5, 6, 7], palette: palette)
    }
}
