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
        subcommands: [EnqueueCommand.self, TaskCommand.self, WorkerCommand.self, QueuesCommand.self, WorkersCommand.self, TopCommand.self, DeadCommand.self,
                      CoordinatorCommand.self, WorkflowCommand.self, ScheduleCommand.self, DevCommand.self, TopologyCommand.self,
                      BenchCommand.self, CheckArgsCommand.self, CLIReferenceCommand.self])
}

