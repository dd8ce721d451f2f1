public import Foundation
import SluiceSpawn

/// A private RabbitMQ node on 127.0.0.1, started and stopped with the
/// repository's `scripts/broker`: `sluice dev` runs one, and tests run many.
///
/// Each node has its own name, data folder and ten ports from ``basePort``
/// (see `scripts/broker --help`), so tests that stop, restart or reconfigure a
/// broker never disturb the shared one or each other.
public struct PrivateBroker: Sendable {
    /// Why a broker command failed, with its output.
    public struct Failure: Error, CustomStringConvertible {
        public var command: String
        public var status: Int32
        public var output: String
        public var description: String { "\(command) exited \(status):\n\(output)" }
    }

    /// Node name suffix (`sluice-<name>@localhost`).
    public let name: String
    /// First of the node's ten ports (AMQP).
    public let basePort: Int
    /// Folder with ca.pem, server.pem, server-key.pem for a TLS listener on basePort+1.
    public let tlsDirectory: String?
    /// Plugins to enable, or "none".
    public let plugins: String

    /// `amqp://guest:guest@127.0.0.1:<basePort>/%2f`.
    public var amqpURL: String { "amqp://guest:guest@127.0.0.1:\(basePort)/%2f" }
    /// The TLS listener's port (when ``tlsDirectory`` is set).
    public var amqpsPort: Int { basePort + 1 }
    /// The management API's base URL.
    public var managementURL: String { "http://127.0.0.1:\(basePort + 2)/" }

    /// A node description.
    public init(name: String, basePort: Int, tlsDirectory: String? = nil, plugins: String = "none") {
        self.name = name
        self.basePort = basePort
        self.tlsDirectory = tlsDirectory
        self.plugins = plugins
    }

    /// The repository's `scripts/broker`.
    public static var script: URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/broker")
    }

    /// Starts the node and waits until it accepts connections.
    public func start() async throws { _ = try await run(["start"]) }
    /// Stops the node (its data stays).
    public func stop() async throws { _ = try await run(["stop"]) }
    /// Stops the node and deletes its data.
    public func destroy() async throws { _ = try await run(["destroy"]) }
    /// Runs `rabbitmqctl` against the node and returns its output.
    public func ctl(_ arguments: String...) async throws -> String { try await run(["ctl"] + arguments) }

    /// Runs `scripts/broker` with this node's settings, off the cooperative pool.
    public func run(_ arguments: [String]) async throws -> String {
        var environment = ProcessInfo.processInfo.environment
        environment["SLUICE_BROKER_NAME"] = name
        environment["SLUICE_BROKER_PORT"] = String(basePort)
        environment["SLUICE_BROKER_PLUGINS"] = plugins
        environment["SLUICE_BROKER_TLS_DIR"] = tlsDirectory
        let (status, text) = try await runTool(Self.script.path, arguments, environment: environment)
        guard status == 0 else {
            throw Failure(command: "scripts/broker \(arguments.joined(separator: " ")) [\(name)]", status: status, output: text)
        }
        return text
    }
}

/// Runs a program to its end and returns its exit status (128 + the signal
/// for one killed by a signal) and output (stdout and stderr together). The
/// output goes to a file, not a pipe: a chatty program cannot fill a pipe
/// and hang, and a server it starts cannot hold our end open. Started with
/// `posix_spawn` (``ChildProcess``), not Foundation's `Process`, whose
/// `run()` can crash on Linux.
public func runTool(_ executable: String, _ arguments: [String],
                    environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> (Int32, String) {
    let logURL = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-tool-\(UUID().uuidString).log")
    _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: logURL) }
    let output = try FileHandle(forWritingTo: logURL)
    let child: ChildProcess
    do {
        defer { try? output.close() }
        child = try ChildProcess(executable: executable, arguments: arguments, environment: environment,
                                 standardOutput: .descriptor(output.fileDescriptor), standardError: .descriptor(output.fileDescriptor))
    }
    let status: Int32 = switch await child.wait() {
    case .exited(let status): status
    case .signaled(let signal): 128 + signal
    }
    return (status, (try? String(contentsOf: logURL, encoding: .utf8)) ?? "")
}
