import ArgumentParser
import Foundation
import SluiceCore
import SluiceMonitor
import SluiceRabbitMQ
import UnixSignals
import SluiceWorkerProcess

struct QueuesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queues",
        abstract: "Show every Sluice queue under the prefix: ready, oldest age, unacknowledged, consumers, rates, dead, delayed, wait.",
        discussion: """
        Counts and rates come from RabbitMQ's management API when it answers; without it the \
        command still shows ready tasks and consumers (passive declares, for the queues given \
        with --queue, else 'default') and says that rates are unavailable. Reading never changes \
        a queue: nothing is fetched and requeued, so delivery counts stay as they were.

        OLDEST is how long the oldest ready task has waited. RabbitMQ's quorum queues do not \
        report their head message's timestamp, so it is bounded by what workers report in \
        their heartbeats (the enqueue time of the newest task each received; ready tasks came \
        later) and by when the queue was last seen with nothing ready: an upper bound, within \
        about a heartbeat interval while workers run. Before it knows either, it counts from \
        when this command first saw the queue, shown as ≥ (a lower bound). The command pings \
        the workers and listens for --wait first; with --watch the bound tightens as it runs. \
        The coordinator exports the same as sluice_queue_oldest_age_seconds.

        WAIT is the median enqueue-to-start wait that workers reported in their recent outcome \
        events; it fills in with --watch (the command listens to events while it runs).
        """)

    @Option(name: .customLong("queue"), help: "Only this queue (repeat for several).")
    var queues: [String] = []
    @Option(help: "How long to listen for worker heartbeats before the first listing (they name the queues workers consume and bound the oldest ages); 0s skips it.")
    var wait: DurationArgument = "1s"
    @Option(help: "Refresh interval with --watch.")
    var interval: DurationArgument = "2s"
    @OptionGroup var output: SnapshotOptions
    @OptionGroup var managementOptions: ManagementOptions
    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        for q in queues {
            do { try Topology.validateQueue(q) } catch let error as SluiceError { throw ValidationError("--queue: \(error.message)") }
        }
    }

    func run() async throws {
        let broker = try await connection.connect(name: "sluice queues")
        let collector = QueueCollector(broker: broker, management: try managementOptions.client(connection))
        let palette = output.palette
        // Heartbeats name the queues workers consume and bound the backlog's
        // age; watching, outcome events give the wait too.
        let events = try await EventWatch(broker: broker, outcomes: output.watch)
        if wait.duration > .zero {
            await events.ping()
            try await Task.sleep(for: wait.duration)
        }
        let queues = self.queues
        try await printSnapshots(watch: output.watch, json: output.json, every: interval.duration) {
            let overview = await collector.collect(only: queues, known: events.workerQueues(), waits: events.recentWaits(),
                                                   newestTaken: events.newestTaken())
            return (overview, Self.render(overview, palette: palette))
        }
        await events.stop()
        await broker.close()
    }

    static func render(_ o: QueueOverview, palette: Rendering.Palette) -> [String] {
        let rows = o.queues.map { r -> [String] in
            let dead = r.dead.map { $0 > 0 ? palette.red(String($0)) : "0" } ?? "-"
            return [r.missing ? palette.yellow(r.queue + " (missing)") : r.queue, Rendering.count(r.ready), Rendering.age(r), Rendering.count(r.unacknowledged),
                    Rendering.count(r.consumers), Rendering.rate(r.publishRate), Rendering.rate(r.deliverRate), Rendering.rate(r.ackRate),
                    dead, Rendering.duration(milliseconds: r.recentWaitMilliseconds), Rendering.replicas(r, palette: palette),
                    r.leader.map(Rendering.node) ?? "-"]
        }
        var lines = Rendering.table(["QUEUE", "READY", "OLDEST", "UNACKED", "CONSUMERS", "PUBLISH", "DELIVER", "ACK", "DEAD", "WAIT", "ONLINE", "LEADER"], rows,
                                    right: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], palette: palette)
        if o.queues.isEmpty { lines.append(palette.dim("no queues under the prefix '\(o.prefix)' yet")) }
        lines.append("delay ladder: \(Rendering.count(o.delayed)) tasks waiting (retries and delayed tasks)")
        let short = o.queues.filter(\.underReplicated).map(\.queue)
        if !short.isEmpty {
            lines.append(palette.red("under-replicated (a member offline): \(short.joined(separator: ", "))"))
        }
        if !o.ratesAvailable {
            lines.append(palette.yellow("rates and unacknowledged counts unavailable: \(o.ratesUnavailableReason ?? "no management API")"))
        }
        return lines
    }
}

