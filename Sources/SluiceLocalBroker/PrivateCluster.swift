public import Foundation

/// A private three-node RabbitMQ cluster on 127.0.0.1, started and stopped
/// with the repository's `scripts/cluster` (see `scripts/cluster --help`):
/// its own node names, data and ports from ``basePort`` (the shared epmd),
/// `basePort + 10 × N` for node N's AMQP port.
public struct PrivateCluster: Sendable {
    /// The cluster's name (`sluice-<name>-<N>@localhost`).
    public let name: String
    /// The shared epmd port; node N's ports start at `basePort + 10 × N`.
    public let basePort: Int
    /// Plugins to enable, or "none".
    public let plugins: String

    public init(name: String, basePort: Int, plugins: String = "none") {
        self.name = name
        self.basePort = basePort
        self.plugins = plugins
    }

    /// Node N's AMQP port (N from 1 to 3).
    public func amqpPort(_ node: Int) -> Int { basePort + 10 * node }
    /// Node N's URL alone.
    public func url(node: Int) -> String { "amqp://guest:guest@127.0.0.1:\(amqpPort(node))/%2f" }
    /// The cluster's URL, its nodes comma-separated in the order given (all three by default).
    public func url(nodes: [Int] = [1, 2, 3]) -> String {
        "amqp://guest:guest@\(nodes.map { "127.0.0.1:\(amqpPort($0))" }.joined(separator: ","))/%2f"
    }
    /// Node N's management API base URL (with the management plugin).
    public func managementURL(node: Int) -> String { "http://127.0.0.1:\(basePort + 10 * node + 2)/" }

    /// The repository's `scripts/cluster`.
    public static var script: URL {
        PrivateBroker.script.deletingLastPathComponent().appendingPathComponent("cluster")
    }

    /// Starts the nodes and joins them into one cluster.
    public func start() async throws { _ = try await run(["start"]) }
    /// Stops every node (their data stays).
    public func stop() async throws { _ = try await run(["stop"]) }
    /// Stops every node and deletes their data.
    public func destroy() async throws { _ = try await run(["destroy"]) }
    /// Ends node N at once (SIGKILL), as a crash would.
    public func kill(node: Int) async throws { _ = try await run(["kill", String(node)]) }
    /// Starts node N again (stopping it first if it runs) and waits until it is back in the cluster.
    public func restart(node: Int) async throws { _ = try await run(["restart", String(node)]) }
    /// Runs `rabbitmqctl` against node N and returns its output.
    public func ctl(node: Int, _ arguments: String...) async throws -> String { try await run(["ctl", String(node)] + arguments) }

    /// Runs `scripts/cluster` with this cluster's settings.
    public func run(_ arguments: [String]) async throws -> String {
        var environment = ProcessInfo.processInfo.environment
        environment["SLUICE_CLUSTER_NAME"] = name
        environment["SLUICE_CLUSTER_PORT"] = String(basePort)
        environment["SLUICE_CLUSTER_PLUGINS"] = plugins
        let (status, text) = try await runTool(Self.script.path, arguments, environment: environment)
        guard status == 0 else {
            throw PrivateBroker.Failure(command: "scripts/cluster \(arguments.joined(separator: " ")) [\(name)]", status: status, output: text)
        }
        return text
    }
}
