public import SluiceCore
import SluiceAMQP
import SluiceWire

/// Unique task locks on RabbitMQ: see ``Topology/uniqueLockQueue(_:)``.
extension RabbitMQBroker {
    public func prepareUniqueLock(_ key: UniqueKey) async throws {
        let channel = try await connection.openChannel()
        defer { Task { try? await channel.close() } }
        try await channel.exchangeDeclare(topology.uniqueExchangeDeclaration)
        let lock = topology.uniqueLockQueueDeclaration(key)
        let holder = topology.uniqueHolderQueueDeclaration(key)
        // Not recorded: a reconnect would declare every lock this process
        // ever took again, and bring back those that expired meanwhile.
        for queue in [lock, holder] {
            try await channel.queueDeclare(queue, recorded: false)
            try await channel.queueBind(queue: queue.name, exchange: topology.uniqueExchange, routingKey: queue.name, recorded: false)
        }
    }

    public func uniqueHolder(_ lockQueue: String) async throws -> String? {
        let channel = try await connection.openChannel()
        defer { Task { try? await channel.close() } }
        return try await peek(topology.uniqueHolderQueue(ofLock: lockQueue), on: channel)
    }

    public func peekUniqueLock(_ lockQueue: String) async throws -> String? {
        let channel = try await connection.openChannel()
        defer { Task { try? await channel.close() } }
        return try await peek(lockQueue, on: channel)
    }

    /// The body of a queue's first message, read and put back (nil: none,
    /// or no such queue: the broker then closes the channel).
    private func peek(_ queue: String, on channel: AMQPChannel) async throws -> String? {
        let message: AMQPDelivery?
        do {
            message = try await channel.get(queue: queue)
        } catch let error as AMQPError where error.replyCode == 404 {
            return nil
        }
        guard let message else { return nil }
        try await channel.reject(message, requeue: true)
        return String(decoding: message.body, as: UTF8.self)
    }

    public func releaseUniqueLock(queue: String, taskID: String) async throws {
        guard topology.isUniqueLockQueue(queue) else {
            throw SluiceError(.invalidArgument, "\(queue) is not a unique lock queue of prefix \(topology.prefix)")
        }
        // One channel for all three calls. The two queues are declared and
        // expire together: either missing (404, which closes the channel)
        // means the lock expired with its window, and there is nothing to give back.
        let holder = topology.uniqueHolderQueue(ofLock: queue)
        let channel = try await connection.openChannel()
        defer { Task { try? await channel.close() } }
        do {
            // Another task's lock (this one's expired and was taken again; a
            // replayed or hand-made header): left alone.
            if let holding = try await peek(holder, on: channel), holding != taskID { return }
            // The holder first: once the lock is free, a new holder may be written.
            _ = try await channel.queuePurge(holder)
            _ = try await channel.queuePurge(queue)
        } catch let error as AMQPError where error.replyCode == 404 {
            return
        }
    }
}
