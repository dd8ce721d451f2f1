import Foundation
import SluiceAMQP
import SluiceLocalBroker
import SluiceTesting
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

    static func connect(recovery: Bool = false, name: String = #function) async throws -> AMQPConnection {
        let url = try AMQPURL(await url())
        return try await AMQPConnection.connect(.init(
            url: url, connectionName: "test \(name)", recovery: recovery ? .init() : nil))
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
