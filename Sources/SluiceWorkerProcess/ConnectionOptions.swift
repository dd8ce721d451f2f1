public import ArgumentParser
public import SluiceAMQP
public import SluiceCore
public import SluiceRabbitMQ
import SluiceWire

/// Options every command shares.
public struct ConnectionOptions: ParsableArguments, Sendable {
    @Option(help: ArgumentHelp(
        "Broker URL (default: $SLUICE_URL, then the local private broker).",
        discussion: """
            For a cluster, name its nodes: comma-separated in one URL \
            (amqp://user:pass@node1:5672,node2:5672,node3:5672/vhost, also in SLUICE_URL), \
            or --url repeated (in SLUICE_URL: several URLs separated by spaces). A connection starts at a random node and moves to the next \
            when one cannot be reached or is lost.
            """))
    public var url: [String] = []

    @Option(help: "Name prefix of Sluice's exchanges and queues.")
    public var prefix: String = "sluice"

    @Option(help: ArgumentHelp("Deliveries after which the broker dead-letters a task that keeps crashing workers.",
                               discussion: "A queue argument: every process using a queue must agree on it."))
    public var deliveryLimit: Int = 10

    @Option(help: ArgumentHelp("Members of each quorum queue Sluice creates (x-quorum-initial-group-size).",
                               discussion: """
                                   RabbitMQ takes at most the cluster's node count, so 3 means every node of a \
                                   three-node cluster and the one node of a single broker. A queue argument: give \
                                   every process the same value. A queue that already exists keeps its members \
                                   (change them with rabbitmq-queues grow or shrink).
                                   """))
    public var replicas: Int = 3

    public init() {}

    public static let localBroker = "amqp://guest:guest@127.0.0.1:27170/%2f"

    /// The URLs as given, for a child process's SLUICE_URL (which may hold
    /// several, separated by spaces: a URL has none); nil if none was given.
    public var urlEnvironment: String? { url.isEmpty ? nil : url.joined(separator: " ") }

    /// The broker URLs in force, as text: `--url`, else SLUICE_URL, else the local broker.
    public var urlText: String { urlEnvironment ?? Environment.value("SLUICE_URL") ?? Self.localBroker }
}

extension ConnectionOptions {
    public func resolvedURL() throws -> AMQPURL {
        do {
            return try Self.brokerURL(urlText)
        } catch let error as AMQPError {
            throw ValidationError("--url: \(error.message)")
        }
    }

    /// The broker in a SLUICE_URL-style text: one URL (its nodes
    /// comma-separated), or several URLs of one cluster separated by spaces.
    public static func brokerURL(_ text: String) throws -> AMQPURL {
        // Before any connection logs: to standard error, not into the command's output.
        CLILogging.start()
        return try AMQPURL(joining: text.split(separator: " ").map(String.init))
    }

    public func topology() throws -> Topology {
        do { return try Topology(prefix: prefix, deliveryLimit: deliveryLimit, replicas: replicas) } catch let error as SluiceError { throw ValidationError(error.message) }
    }

    /// Connects; `publishingConnections`: see ``RabbitMQBroker/connect(url:topology:connectionName:confirmWindow:publisherChannels:publishingConnections:)``.
    public func connect(name: String, publishingConnections: Int = 0) async throws -> RabbitMQBroker {
        let url = try resolvedURL()
        do {
            return try await RabbitMQBroker.connect(url: url, topology: try topology(), connectionName: name,
                                                    publishingConnections: publishingConnections)
        } catch let error as AMQPError where error.code == .connectionFailed {
            throw CLIError("cannot reach the broker at \(url): \(error.message). Start one with scripts/broker start, or pass --url.")
        }
    }
}
