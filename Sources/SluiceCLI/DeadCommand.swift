import ArgumentParser
import Foundation
import SluiceAMQP
import SluiceCore
import SluiceRabbitMQ
import SluiceWire

struct DeadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead",
        abstract: "List, show, replay and purge dead tasks.",
        subcommands: [List.self, Show.self, Replay.self, Purge.self])

    /// A dead task as read from the dead queue.
    struct Entry {
        var delivery: BrokerDelivery
        var id: String { delivery.properties.messageId ?? "" }
        var name: String { delivery.properties.type ?? "" }
        var headers: FieldTable { delivery.properties.headers ?? [:] }
        /// Our reason, or the broker's (delivery limit, rejection...).
        var reason: String {
            if let r = headers[WireHeader.deadReason]?.stringValue { return r }
            if let r = headers["x-first-death-reason"]?.stringValue { return r == "delivery_limit" ? DeadReason.deliveryLimit.rawValue : r }
            return "unknown"
        }
        var attempt: Int {
            let value = headers[WireHeader.attempt]
            return value?.intValue ?? value?.stringValue.flatMap { Int($0) } ?? 1
        }
        var error: String { headers[WireHeader.errorMessage]?.stringValue ?? "" }
        var deadAt: Date? { headers[WireHeader.deadAt]?.intValue.map { Date(epochMilliseconds: Int64($0)) } }

        var json: [String: Any] {
            var j: [String: Any] = ["id": id, "name": name, "reason": reason, "attempt": attempt, "error": error,
                                    "arguments": String(decoding: delivery.body, as: UTF8.self)]
            if let deadAt { j["dead_at"] = ISO8601DateFormatter().string(from: deadAt) }
            if let t = headers[WireHeader.errorType]?.stringValue { j["error_type"] = t }
            if let w = headers[WireHeader.deadBy]?.stringValue { j["worker"] = w }
            return j
        }
    }

    /// Reads up to `limit` dead tasks; `visit` decides each one's fate
    /// (true: acknowledge, it was handled; false: back to the dead queue).
    /// Bounded by the count at the start, so requeued ones are not read twice.
    ///
    /// Reading is consume-and-requeue, and a quorum queue takes requeued
    /// messages back asynchronously: before it returns, the scan closes its
    /// channel and waits (up to 15 s) until the queue counts the messages it
    /// put back, so that a replay or purge run right after a listing sees
    /// every dead task.
    /// A dead queue belongs to a queue, not to one of its levels.
    static func checkQueue(_ queue: String) throws {
        do { try Topology.validateBaseQueue(queue) } catch let error as SluiceError { throw ValidationError(error.message) }
    }

    static func scan(_ broker: RabbitMQBroker, queue: String, limit: Int,
                     visit: (Entry) async throws -> Bool) async throws {
        let name = broker.topology.deadQueue(queue)
        let available: Int
        do {
            available = try await settledCount(broker, name)
        } catch let error as AMQPError where error.replyCode == 404 {
            throw CLIError("no dead queue for '\(queue)' (\(name)); has a worker or producer used this queue?")
        }
        let total = min(available, limit)
        guard total > 0 else { return }
        let consumer = try await broker.consume(queue: name, prefetch: min(total, 1000))
        var seen = 0
        var kept = 0
        do {
            for try await delivery in consumer {
                seen += 1
                if try await visit(Entry(delivery: delivery)) {
                    try await delivery.ack()
                } else {
                    try await delivery.reject(requeue: true)
                    kept += 1
                }
                if seen >= total { break }
            }
        } catch {
            await consumer.close()
            throw error
        }
        // Closing the channel also returns anything delivered past `total`.
        await consumer.close()
        if kept > 0 { await waitForReady(broker, name, atLeast: available - (seen - kept)) }
    }

    /// The ready count once no other reader (an earlier `dead list` still
    /// handing its messages back) holds the queue, waiting up to 60 s for that.
    static func settledCount(_ broker: RabbitMQBroker, _ name: String) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            let state = try await broker.queueState(name)
            if state.consumerCount == 0 || ContinuousClock.now >= deadline { return Int(state.messageCount) }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Waits (up to 60 s) until `name` counts at least `count` ready
    /// messages: a quorum queue counts returned messages as ready again only
    /// after its log has them, which on a busy broker took over 15 s, and a
    /// `dead replay` right after this reader must see every one.
    static func waitForReady(_ broker: RabbitMQBroker, _ name: String, atLeast count: Int) async {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            guard let state = try? await broker.queueState(name) else { return }
            if Int(state.messageCount) >= count { return }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the tasks in a queue's dead queue (read-only).")
        @Argument(help: "The queue.") var queue: String
        @Option(help: "Show at most this many.") var limit: Int = 100
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func validate() throws { try DeadCommand.checkQueue(queue) }

        func run() async throws {
            let broker = try await connection.connect(name: "sluice dead list")
            var entries: [[String: Any]] = []
            var rows: [String] = []
            try await DeadCommand.scan(broker, queue: queue, limit: limit) { entry in
                entries.append(entry.json)
                rows.append("\(entry.id)  \(entry.name)  \(entry.reason)  attempt \(entry.attempt)  \(entry.error.prefix(60))")
                return false
            }
            await broker.close()
            if json {
                printJSON(entries)
            } else if rows.isEmpty {
                print("no dead tasks in \(queue)")
            } else {
                print("ID  NAME  REASON  ATTEMPT  ERROR")
                rows.forEach { print($0) }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one dead task with all its headers.")
        @Argument(help: "The queue.") var queue: String
        @Argument(help: "The task id.") var id: String
        @OptionGroup var connection: ConnectionOptions

        func validate() throws { try DeadCommand.checkQueue(queue) }

        func run() async throws {
            let broker = try await connection.connect(name: "sluice dead show")
            var found: [String: Any]?
            try await DeadCommand.scan(broker, queue: queue, limit: .max) { entry in
                if entry.id == id {
                    var j = entry.json
                    var headers: [String: String] = [:]
                    for (k, v) in entry.headers { headers[k] = v.stringValue ?? v.intValue.map(String.init) ?? "\(v)" }
                    j["headers"] = headers
                    found = j
                }
                return false
            }
            await broker.close()
            guard let found else { throw CLIError("no dead task \(id) in \(queue)") }
            printJSON(found)
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put dead tasks back on their work queue.",
            discussion: "Each task is re-enqueued (confirmed) before it leaves the dead queue, so an interrupted replay loses nothing.")
        @Argument(help: "The queue.") var queue: String
        @Option(help: "Replay this task id (repeat for several).") var id: [String] = []
        @Flag(help: "Replay every dead task.") var all = false
        @Flag(help: "Start the attempt count again at 1.") var resetAttempts = false
        @OptionGroup var connection: ConnectionOptions

        func validate() throws {
            try DeadCommand.checkQueue(queue)
            guard all != !id.isEmpty else { throw ValidationError("give --id ID (one or more) or --all") }
        }

        func run() async throws {
            let broker = try await connection.connect(name: "sluice dead replay")
            let wanted = Set(id)
            var replayed = 0
            var replayedIDs = Set<String>()
            var preparedLevels = Set<String>()
            var orderedPrepared = false
            try await DeadCommand.scan(broker, queue: queue, limit: .max) { entry in
                guard all || wanted.contains(entry.id) else { return false }
                replayedIDs.insert(entry.id)
                var properties = entry.delivery.properties
                var headers = properties.headers ?? [:]
                // Back to the priority level it left (read before x-death goes).
                let level = broker.topology.priority(ofDeadLetter: headers)
                let key = Topology.levelName(queue, level)
                if preparedLevels.insert(key).inserted { try await broker.prepare(queues: [key]) }
                for key in [WireHeader.deadReason, WireHeader.errorType, WireHeader.errorMessage, WireHeader.deadAt, WireHeader.deadBy,
                            WireHeader.signature, WireHeader.trimmedHeaders,
                            // A replay takes no unique key's lock: it must not give one back either.
                            WireHeader.uniqueLock,
                            "x-death", "x-first-death-reason", "x-first-death-queue", "x-first-death-exchange",
                            "x-last-death-reason", "x-last-death-queue", "x-last-death-exchange", "x-delivery-count"] {
                    headers[key] = nil
                }
                if resetAttempts { headers[WireHeader.attempt] = 1 }
                if level != .normal { headers[WireHeader.priority] = .string(level.rawValue) }
                properties.headers = headers
                // An ordered task goes back to its key's partition (behind the key's later tasks, which ran meanwhile).
                if let orderKey = headers[WireHeader.orderKey]?.stringValue, (try? Topology.validateOrderKey(orderKey)) != nil {
                    if !orderedPrepared { try await broker.prepareOrdered(queues: [queue]); orderedPrepared = true }
                    let partition = Topology.orderPartition(ofKey: orderKey)
                    try await broker.publish(OutboundMessage(exchange: broker.topology.orderedExchange,
                                                             routingKey: broker.topology.orderRoutingKey(queue, partition: partition),
                                                             body: entry.delivery.body, properties: properties, mandatory: true))
                } else {
                    try await broker.publish(OutboundMessage(exchange: broker.topology.tasksExchange, routingKey: key,
                                                             body: entry.delivery.body, properties: properties, mandatory: true))
                }
                replayed += 1
                return true
            }
            await broker.close()
            print("replayed \(replayed) task\(replayed == 1 ? "" : "s") to \(queue)")
            let missing = wanted.subtracting(replayedIDs)
            if !missing.isEmpty { throw CLIError("not found in the dead queue: \(missing.sorted().joined(separator: ", "))") }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete every task in a queue's dead queue.")
        @Argument(help: "The queue.") var queue: String
        @OptionGroup var connection: ConnectionOptions

        func validate() throws { try DeadCommand.checkQueue(queue) }

        func run() async throws {
            let broker = try await connection.connect(name: "sluice dead purge")
            // Purge takes ready messages only: first let a reader hand its messages back.
            _ = try? await DeadCommand.settledCount(broker, broker.topology.deadQueue(queue))
            let n = try await broker.purge(broker.topology.deadQueue(queue))
            await broker.close()
            print("purged \(n) dead task\(n == 1 ? "" : "s") from \(queue)")
        }
    }
}
