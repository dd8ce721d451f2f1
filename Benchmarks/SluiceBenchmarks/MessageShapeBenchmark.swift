import Foundation
public import SluiceAMQP
import SluiceCore
import SluiceRabbitMQ
import SluiceWire

/// What each part of a task message costs the broker: confirmed publishes/s
/// of message shapes between the raw benchmark's bare message and a task
/// message, each round measuring every shape on a fresh queue in turn.
public struct MessageShapeBenchmark: Sendable {
    public struct Shape: Sendable {
        public var name: String
        /// Which of the task message's properties it carries.
        public var properties: Properties
        public enum Properties: Sendable { case persistentOnly, all, noHeaders, idAndType, idTypeAndHeaders }
        /// Through the tasks exchange (else the default exchange).
        public var tasksExchange: Bool
        public var mandatory: Bool = true
        /// The queue declared as Sluice declares a work queue (else quorum, no arguments).
        public var sluiceQueue: Bool
        /// The task's 7-byte body (else 100 bytes).
        public var taskBody: Bool
    }

    public static let shapes: [Shape] = [
        Shape(name: "bare", properties: .persistentOnly, tasksExchange: false, sluiceQueue: false, taskBody: false),
        Shape(name: "bare, work queue", properties: .persistentOnly, tasksExchange: false, sluiceQueue: true, taskBody: false),
        Shape(name: "all task properties", properties: .all, tasksExchange: false, sluiceQueue: false, taskBody: false),
        Shape(name: "task properties, no headers", properties: .noHeaders, tasksExchange: false, sluiceQueue: false, taskBody: false),
        Shape(name: "id and type only", properties: .idAndType, tasksExchange: false, sluiceQueue: false, taskBody: false),
        Shape(name: "id, type and the header", properties: .idTypeAndHeaders, tasksExchange: false, sluiceQueue: false, taskBody: false),
        Shape(name: "bare, tasks exchange, work queue", properties: .persistentOnly, tasksExchange: true, mandatory: false, sluiceQueue: true, taskBody: false),
        Shape(name: "bare, tasks exchange + mandatory, work queue", properties: .persistentOnly, tasksExchange: true, sluiceQueue: true, taskBody: false),
        Shape(name: "task message", properties: .all, tasksExchange: true, sluiceQueue: true, taskBody: true),
    ]

    public var url: AMQPURL
    public var count: Int
    public var rounds: Int

    public init(url: AMQPURL, count: Int, rounds: Int) {
        self.url = url
        self.count = count
        self.rounds = rounds
    }

    /// Rates per shape (index as ``shapes``), one per round.
    public func run(progress: @Sendable (String) -> Void = { _ in }) async throws -> [[Double]] {
        var rates = [[Double]](repeating: [], count: Self.shapes.count)
        for round in 1...rounds {
            let order = round % 2 == 1 ? Array(Self.shapes.indices) : Self.shapes.indices.reversed()
            for i in order {
                progress("round \(round)/\(rounds): \(Self.shapes[i].name)")
                rates[i].append(try await measure(Self.shapes[i]))
            }
        }
        return rates
    }

    func measure(_ shape: Shape) async throws -> Double {
        let topology = try Topology(prefix: "sluice-shape-\(UInt32.random(in: 0...UInt32.max))")
        let broker = try await RabbitMQBroker.connect(url: url, topology: topology, connectionName: "sluice bench shapes", publisherChannels: 1)
        let channel = try await broker.connection.openChannel(confirms: true)
        let queue: String
        if shape.sluiceQueue {
            try await broker.prepare(queues: ["bench"])
            queue = topology.workQueue("bench")
        } else {
            queue = topology.prefix + ".plain"
            try await channel.queueDeclare(QueueDeclaration(name: queue, arguments: ["x-queue-type": .string("quorum")]))
        }
        let task = topology.message(for: TaskEnvelope(name: "bench.noop", queue: "bench", arguments: Array(#"{"n":0}"#.utf8)))
        var message = shape.tasksExchange ? task : OutboundMessage(routingKey: queue, body: task.body)
        message.mandatory = shape.tasksExchange && shape.mandatory
        var properties = BasicProperties.persistent
        switch shape.properties {
        case .persistentOnly: break
        case .all: properties = task.properties
        case .noHeaders: properties = task.properties; properties.headers = nil
        case .idAndType, .idTypeAndHeaders:
            properties.messageId = task.properties.messageId
            properties.type = task.properties.type
            if shape.properties == .idTypeAndHeaders { properties.headers = task.properties.headers }
        }
        message.properties = properties
        message.body = shape.taskBody ? task.body : [UInt8](repeating: 0x61, count: 100)
        let sent = message
        let start = ContinuousClock.now
        try await pipelined(count: count, inFlight: 1024) { n in
            for result in try await channel.publish(batch: Array(repeating: sent, count: n)) { try result.get() }
        }
        let rate = Double(count) / seconds(since: start)
        for name in [queue, topology.workQueue("bench"), topology.deadQueue("bench")] { _ = try? await channel.queueDelete(name) }
        await broker.close()
        return rate
    }
}
