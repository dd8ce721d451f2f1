public import Foundation
import SluiceLocalBroker

/// A private PostgreSQL cluster for tests, started and stopped with
/// `scripts/postgres` (initdb into the project's `.sluice/postgres/<name>`,
/// listening on 127.0.0.1 only).
public struct PrivatePostgres: Sendable {
    /// Why a PostgreSQL command failed, with its output.
    public struct Failure: Error, CustomStringConvertible {
        public var command: String
        public var status: Int32
        public var output: String
        public var description: String { "\(command) exited \(status): \(output.suffix(2000))" }
    }

    public let name: String
    public let port: Int
    /// A folder with `server.pem` and `server-key.pem`: the cluster also accepts TLS.
    public let tlsDirectory: String?

    public init(name: String, port: Int, tlsDirectory: String? = nil) {
        self.name = name
        self.port = port
        self.tlsDirectory = tlsDirectory
    }

    /// The cluster's admin URL (database `postgres`, user `postgres`, trusted on loopback).
    public var url: String { "postgres://postgres@127.0.0.1:\(port)/postgres" }

    /// The repository's `scripts/postgres`.
    public static var script: URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/postgres")
    }

    /// Starts the cluster (creating it the first time) and waits until it accepts connections.
    public func start() async throws { _ = try await run(Self.script.path, ["start"]) }
    /// Stops the cluster (its data stays).
    public func stop() async throws { _ = try await run(Self.script.path, ["stop"]) }
    /// Stops the cluster and deletes its data.
    public func destroy() async throws { _ = try await run(Self.script.path, ["destroy"]) }

    /// Creates a new empty database and returns its URL.
    public static func createDatabase(adminURL: String, prefix: String = "t") async throws -> String {
        let name = "\(prefix)_\(UInt32.random(in: 0...UInt32.max))"
        _ = try await PrivatePostgres(name: "", port: 0).run("/usr/bin/psql", [adminURL, "-v", "ON_ERROR_STOP=1", "-qc", "CREATE DATABASE \(name)"])
        guard let slash = adminURL.lastIndex(of: "/") else { return adminURL }
        return String(adminURL[...slash]) + name
    }

    /// Runs a command with this cluster's settings, off the cooperative pool.
    func run(_ executable: String, _ arguments: [String]) async throws -> String {
        var environment = ProcessInfo.processInfo.environment
        environment["SLUICE_POSTGRES_NAME"] = name
        environment["SLUICE_POSTGRES_PORT"] = String(port)
        environment["SLUICE_POSTGRES_TLS_DIR"] = tlsDirectory
        let (status, text) = try await runTool(executable, arguments, environment: environment)
        guard status == 0 else {
            throw Failure(command: "\(executable) \(arguments.joined(separator: " "))", status: status, output: text)
        }
        return text
    }
}
