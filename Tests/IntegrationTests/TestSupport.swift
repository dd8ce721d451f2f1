import Foundation
import SluiceAMQP
import SluiceLocalBroker
import SluiceTesting
import SluiceWire
import Synchronization
import Testing

/// The broker most integration tests share (they use unique queue names).
///
/// `scripts/test` starts it and sets SLUICE_TEST_URL; run directly with
/// `swift test`, the tests start the same node themselves.
enum SharedBroker {
    static let node = PrivateBroker(name: "test", basePort: 27270, plugins: "rabbitmq_management")

    private static let ready = Task<String, any Error> {
        if let url = ProcessInfo.processInfo.environment["SLUICE_TEST_URL"], !url.isEmpty { return url }
        try await node.start()
        return node.amqpURL
    }

    static func url() async throws -> String { try await ready.value }

    /// The broker's pid of the connection named `name` (exactly: not `name (publishing)`), if one is open.
    static func connectionPID(named name: String) async throws -> String? {
        try await connections(named: name).first?.pid
    }

    /// The open connections named `name` (exactly), with their channel
    /// counts and the bytes the broker has read from each.
    static func connections(named name: String) async throws -> [(pid: String, channels: Int, received: Int)] {
        let listing = try await node.ctl("list_connections", "pid", "channels", "recv_oct", "client_properties", "-q")
        // client_properties reads {"connection_name","longstr","<name>"}: the closing quote makes it exact.
        return listing.split(separator: "\n").filter { $0.contains("\"\(name)\"") }.compactMap { line in
            let fields = line.split(separator: "\t")
            guard fields.count >= 3, let channels = Int(fields[1]), let received = Int(fields[2]) else { return nil }
            return (String(fields[0]), channels, received)
        }
    }

    /// Has the broker close the connection named `name` (as a node restart or
    /// a network cut would), then waits until `events` (that connection's)
    /// report it recovered; false if they ended first.
    static func closeConnection(named name: String, why: String, awaiting events: AsyncStream<AMQPConnectionEvent>) async throws -> Bool {
        let pid = try #require(try await connectionPID(named: name), "no connection named \(name)")
        _ = try await node.ctl("close_connection", pid, "test: \(why)")
        return try await within(120, "the connection \(name) to recover") {
            for await event in events { if case .recovered = event { return true } }
            return false
        }
    }

    static func connect(recovery: Bool = false, name: String = #function) async throws -> AMQPConnection {
        let url = try AMQPURL(await url())
        return try await AMQPConnection.connect(.init(
            url: url, connectionName: "test \(name)", recovery: recovery ? .init() : nil))
    }
}

/// Declares a quorum queue on a short connection of its own, again while the
/// broker answers transiently: on a loaded machine a node may not start the
/// queue's Raft member in time and answers 541 `cluster_not_formed`, closing
/// the connection (as the product's own declarations allow for, see
/// ``TransientRetry``). A test's channel then declares the queue again and
/// finds it in place, so the test's connection is never the one closed.
func declareQuorumQueue(_ name: String, at url: AMQPURL) async throws {
    try await TransientRetry.run("declaring quorum queue \(name)", budget: .seconds(120)) {
        let connection = try await AMQPConnection.connect(.init(url: url, connectionName: "test declare", recovery: nil))
        do {
            let channel = try await connection.openChannel()
            try await channel.queueDeclare(.quorum(name))
            await connection.close()
        } catch {
            await connection.close()
            throw error
        }
    }
}

/// A name no other test (or earlier run) uses.
func uniqueName(_ base: String) -> String {
    "it.\(base).\(UInt32.random(in: 0...UInt32.max))"
}

/// Takes `count` deliveries from a consumer (or fails after `seconds`).
func take(_ count: Int, from consumer: AMQPConsumer, within seconds: Double = 30, ack: Bool = false) async throws -> [AMQPDelivery] {
    try await within(seconds, "\(count) deliveries from \(consumer.queue)") {
        var out: [AMQPDelivery] = []
        for try await delivery in consumer {
            out.append(delivery)
            if ack { try await delivery.ack() }
            if out.count == count { break }
        }
        return out
    }
}

extension String {
    var bytes: [UInt8] { Array(utf8) }
}

/// A value behind a lock, shareable with tasks and handlers.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}
