import ArgumentParser
import SluiceCore

@main
struct Sluice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Durable task queues and workflows on RabbitMQ: enqueue tasks, run workers and the coordinator, steer workflows, inspect dead letters.",
        discussion: """
        Every command connects with --url, else $SLUICE_URL, else the local private broker \
        started by scripts/broker (amqp://guest:guest@127.0.0.1:27170/%2f). Passwords are \
        never printed.
        """,
        version: SluiceVersion.current,
        subcommands: [Enqueue.self, WorkerCommand.self, QueuesCommand.self, WorkersCommand.self, TopCommand.self, Dead.self,
                      CoordinatorCommand.self, WorkflowCommand.self, ScheduleCommand.self, DevCommand.self, TopologyCommand.self,
                      Bench.self, CheckArgs.self, CLIReference.self])
}

/// Options every command shares.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "Broker URL (default: $SLUICE_URL, then the local private broker).")
    var url: String?

    @Option(help: "Name prefix of Sluice's exchanges and queues.")
    var prefix: String = "sluice"

    @Option(help: ArgumentHelp("Deliveries after which the broker dead-letters a task that keeps crashing workers.",
                               discussion: "A queue argument: every process using a queue must agree on it."))
    var deliveryLimit: Int = 10

    static let localBroker = "amqp://guest:guest@127.0.0.1:27170/%2f"
}
