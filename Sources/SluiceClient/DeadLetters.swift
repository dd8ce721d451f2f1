public import SluiceCore
import SluiceWire

/// A queue's dead tasks: list them, put them back on their queue, purge them.
/// `sluice dead` and the coordinator's API (and so its dashboard) use it.
///
/// Reading is consume-and-requeue (a quorum queue has no browse), bounded by
/// the count at the start so requeued tasks are not read twice. A quorum
/// queue takes requeued messages back asynchronously: before a read returns,
/// it closes its channel and waits (up to 60 s) until the queue counts the
/// messages it put back, so that a replay or purge right after a listing
/// sees every dead task.
public struct DeadLetters: Sendable {
    public let broker: any Broker

    public init(broker: any Broker) {
        self.broker = broker
    }

    /// Which dead tasks a replay takes.
    public enum Selection: Sendable, Hashable {
        case all
        case ids(Set<String>)
        /// Those with this reason (``DeadTask/reason``).
        case reason(String)

        func contains(_ task: DeadTask) -> Bool {
            switch self {
            case .all: true
            case .ids(let ids): ids.contains(task.id)
            case .reason(let reason): task.reason == reason
            }
        }
    }

    /// A dead queue belongs to a queue, not to one of its priority levels.
    public static func validate(queue: String) throws(SluiceError) {
        do { try Topology.validateBaseQueue(queue) } catch let error as SluiceError { throw error } catch {
            throw SluiceError(.invalidArgument, "\(error)")
        }
    }

    /// Up to `limit` dead tasks of `queue`, oldest first, and how many its dead queue holds.
    public func list(queue: String, limit: Int) async throws -> (tasks: [DeadTask], total: Int) {
        var tasks: [DeadTask] = []
        let total = try await scan(queue: queue, limit: limit) { task, _ in
            tasks.append(task)
            return false
        }
        return (tasks, total)
    }

    /// The dead task `id` of `queue`, or nil; reads no further than it.
    public func find(queue: String, id: String) async throws -> DeadTask? {
        var found: DeadTask?
        _ = try await scan(queue: queue, limit: .max, until: { found != nil }) { task, _ in
            if task.id == id { found = task }
            return false
        }
        return found
    }

    /// Puts the selected dead tasks back on their work queue (at the priority
    /// level they left, an ordered task on its key's partition). Each is
    /// re-enqueued, confirmed, before it leaves the dead queue, so an
    /// interrupted replay loses nothing. Returns the ids replayed.
    public func replay(queue: String, _ selection: Selection, resetAttempts: Bool = false) async throws -> [String] {
        var replayed: [String] = []
        var preparedLevels = Set<String>()
        var orderedPrepared = false
        let topology = broker.topology
        // Replaying by ids stops reading once every id was found.
        var wanted: Set<String>? = if case .ids(let ids) = selection { ids } else { nil }
        _ = try await scan(queue: queue, limit: .max, until: { wanted?.isEmpty == true }) { task, delivery in
            guard selection.contains(task) else { return false }
            wanted?.remove(task.id)
            var properties = delivery.properties
            var headers = properties.headers ?? [:]
            // Back to the priority level it left (read before x-death goes).
            let level = topology.priority(ofDeadLetter: headers)
            let key = Topology.levelName(queue, level)
            if preparedLevels.insert(key).inserted { try await broker.prepare(queues: [key]) }
            for name in Self.deathHeaders { headers[name] = nil }
            if resetAttempts { headers[WireHeader.attempt] = 1 }
            if level != .normal { headers[WireHeader.priority] = .string(level.rawValue) }
            properties.headers = headers
            // An ordered task goes back to its key's partition (behind the key's later tasks, which ran meanwhile).
            if let orderKey = headers[WireHeader.orderKey]?.stringValue, (try? Topology.validateOrderKey(orderKey)) != nil {
                if !orderedPrepared { try await broker.prepareOrdered(queues: [queue]); orderedPrepared = true }
                try await broker.publish(OutboundMessage(exchange: topology.orderedExchange,
                                                         routingKey: topology.orderRoutingKey(queue, partition: Topology.orderPartition(ofKey: orderKey)),
                                                         body: delivery.body, properties: properties, mandatory: true))
            } else {
                try await broker.publish(OutboundMessage(exchange: topology.tasksExchange, routingKey: key,
                                                         body: delivery.body, properties: properties, mandatory: true))
            }
            replayed.append(task.id)
            return true
        }
        return replayed
    }

    /// Deletes every task in `queue`'s dead queue; returns how many.
    public func purge(queue: String) async throws -> Int {
        let name = broker.topology.deadQueue(queue)
        // Purge takes ready messages only: first let a reader hand its messages back.
        _ = try await settledCount(name)
        return try await broker.purge(name)
    }

    /// Headers a death added, and those a replay must not carry back.
    static let deathHeaders = [
        WireHeader.deadReason, WireHeader.errorType, WireHeader.errorMessage, WireHeader.deadAt, WireHeader.deadBy,
        WireHeader.signature, WireHeader.trimmedHeaders,
        // A replay takes no unique key's lock: it must not give one back either.
        WireHeader.uniqueLock,
        "x-death", "x-first-death-reason", "x-first-death-queue", "x-first-death-exchange",
        "x-last-death-reason", "x-last-death-queue", "x-last-death-exchange", "x-delivery-count",
    ]

    /// Reads up to `limit` dead tasks; `visit` decides each one's fate (true:
    /// acknowledge, it was handled; false: back to the dead queue). Returns
    /// the dead queue's count at the start. Throws ``SluiceError`` `not_found`
    /// when the queue has no dead queue.
    /// `until`: checked after each task; true ends the read early.
    func scan(queue: String, limit: Int, until done: () -> Bool = { false },
              visit: (DeadTask, BrokerDelivery) async throws -> Bool) async throws -> Int {
        let name = broker.topology.deadQueue(queue)
        let available: Int
        do {
            available = try await settledCount(name)
        } catch let error as SluiceError where error.code == .notFound {
            throw SluiceError(.notFound, "no dead queue for '\(queue)' (\(name)); has a worker or producer used this queue?", queue: queue)
        }
        let total = min(available, limit)
        guard total > 0 else { return available }
        let consumer = try await broker.consume(queue: name, prefetch: min(total, 1000))
        var seen = 0
        var kept = 0
        do {
            for try await delivery in consumer {
                seen += 1
                if try await visit(DeadTask(properties: delivery.properties, body: delivery.body), delivery) {
                    try await delivery.ack()
                } else {
                    try await delivery.reject(requeue: true)
                    kept += 1
                }
                if seen >= total || done() { break }
            }
        } catch {
            await consumer.close()
            throw error
        }
        // Closing the channel also returns anything delivered past `total`.
        await consumer.close()
        if kept > 0 { await waitForReady(name, atLeast: available - (seen - kept)) }
        return available
    }

    /// The ready count once no other reader (an earlier listing still handing
    /// its messages back) holds the queue, waiting up to 60 s for that.
    func settledCount(_ name: String) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            let state = try await broker.queueState(name)
            if state.consumerCount == 0 || ContinuousClock.now >= deadline { return Int(state.messageCount) }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Waits (up to 60 s) until `name` counts at least `count` ready
    /// messages: a quorum queue counts returned messages as ready again only
    /// after its log has them, which on a busy broker took over 15 s.
    func waitForReady(_ name: String, atLeast count: Int) async {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            guard let state = try? await broker.queueState(name) else { return }
            if Int(state.messageCount) >= count { return }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}
