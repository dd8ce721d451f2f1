import Foundation
import SluiceCore
import SluiceWire
import Synchronization

/// What an enqueue with a unique key did.
public struct UniqueEnqueue: Sendable, Hashable {
    /// The task's id: the new task's, or the one holding the key's lock.
    public var id: String
    /// Whether a task was enqueued (false: the key's lock was held by `id`).
    public var enqueued: Bool

    public init(id: String, enqueued: Bool) {
        self.id = id
        self.enqueued = enqueued
    }
}

extension TaskClient {
    /// Enqueues a task with a unique key (``EnqueueOptions/unique``), unless
    /// its lock is held: then returns the holder's id, publishing nothing.
    ///
    /// The lock is taken first (one confirmed publish to the key's lock
    /// queue), then the holder's id goes out, then the task. A task the
    /// broker refuses gives its lock back. Without a key this is
    /// a plain ``enqueue(name:json:options:)``.
    public func enqueueUnique(name: String, json: [UInt8], options: EnqueueOptions) async throws -> UniqueEnqueue {
        try await enqueueUnique(Request(name: name, arguments: json, options: options))
    }

    func enqueueUnique(_ request: Request) async throws -> UniqueEnqueue {
        guard let unique = request.options.unique else {
            return UniqueEnqueue(id: try await enqueuePlain(batch: [request])[0].get(), enqueued: true)
        }
        // Built and checked in full before the lock is taken (a task that
        // cannot be sent must not hold its key), with the time before the
        // first lock publish: the expiry its header gives the worker is
        // then never later than the lock's own.
        let now = Date()
        let task = try encode(request, now: now)
        let envelope = task.envelope
        // Its queue declared before the lock too: a declaration that fails
        // must not leave the key held by a task that never went.
        try await prepare([Topology.levelName(envelope.queue, envelope.priority)])
        let topology = broker.topology
        let lockQueue = topology.uniqueLockQueue(unique)
        let lock = topology.uniqueLockMessage(lockQueue: lockQueue, taskID: envelope.id)
        // A lock publish whose outcome is unknown (the connection went) may
        // have taken the lock: then the lock queue holds this task's id.
        var maybeHeld = false
        for attempt in 0..<Self.uniqueAttempts {
            try await declareUniqueLock(unique, queue: lockQueue)
            let taken: Bool
            switch try await publishLock(lock) {
            case .success:
                taken = true
            case .failure(let error) where (error as? AMQPError)?.code == .publishNacked:
                if maybeHeld, try await broker.peekUniqueLock(lockQueue) == envelope.id {
                    taken = true
                } else if let holder = try await readHolder(lockQueue) {
                    // The same id again (a producer retrying after a lost
                    // connection): that task is the holder, and is enqueued.
                    return UniqueEnqueue(id: holder, enqueued: holder == envelope.id)
                } else {
                    taken = false
                }
            case .failure(let error) where PublishFailure.isUnroutable(error):
                // The queue went (deleted by hand?): declare it again.
                _ = uniqueDeclared.withLock { $0.removeValue(forKey: lockQueue) }
                continue
            case .failure(let error) where PublishFailure.isRefusedByDestination(error):
                throw SluiceError(.enqueueFailed, "the broker refused the unique key's lock: \(error)", task: request.name, queue: envelope.queue)
            case .failure:
                maybeHeld = true
                taken = false
            }
            if taken { return try await enqueueHolding(task, lockQueue: lockQueue, now: now) }
            // Taken a moment ago (its holder's id not written yet), given
            // back meanwhile, or being read by another producer (a read
            // holds the id until it puts it back): look again shortly,
            // at a random moment, so that concurrent readers spread out.
            try await Task.sleep(for: .milliseconds(Int.random(in: 2...min(250, 5 << min(attempt, 6)))))
        }
        throw SluiceError(.enqueueFailed, "the unique key's lock \(lockQueue) is held, but its holder could not be read; try again",
                          task: request.name, queue: envelope.queue)
    }

    /// Publishes a lock; a connection lost meanwhile is an unknown outcome, not an error.
    private func publishLock(_ lock: OutboundMessage) async throws -> Result<Void, any Error> {
        do {
            return try await broker.publish([lock])[0]
        } catch let error as AMQPError where error.code == .connectionLost || error.code == .connectionClosed {
            return .failure(error)
        }
    }

    /// With the lock taken: the holder's id (confirmed first, so that a
    /// worker that finishes the task at once never finds it missing), then
    /// the task. A task the broker refused gives the lock back; one whose
    /// fate is unknown (the connection went) keeps it, since it may be
    /// queued: the same id enqueued again then finds itself the holder.
    private func enqueueHolding(_ task: EncodedTask, lockQueue: String, now: Date) async throws -> UniqueEnqueue {
        let envelope = task.envelope
        // Their outcome does not stop the task: without a holder's id, a
        // duplicate enqueue fails with an error instead of returning it.
        _ = try await broker.publish(broker.topology.uniqueHolderMessages(lockQueue: lockQueue, taskID: envelope.id))
        switch try await send([task], now: now)[0] {
        case .success:
            return UniqueEnqueue(id: envelope.id, enqueued: true)
        case .failure(let error) where PublishFailure.isRefusedByDestination(error):
            try? await broker.releaseUniqueLock(queue: lockQueue, taskID: envelope.id)
            throw SluiceError(.enqueueFailed, "the broker refused the task: \(error)", task: envelope.name, queue: envelope.queue)
        case .failure(let error):
            throw SluiceError(.enqueueFailed, "the broker did not confirm the task (it may be queued; its key stays held until "
                              + "the task finishes or the window ends, and enqueueing it again with the same id is safe): \(error)",
                              task: envelope.name, queue: envelope.queue)
        }
    }

    /// The holder of a lock; callers of this client that ask at the same
    /// time share one read.
    private func readHolder(_ lockQueue: String) async throws -> String? {
        let broker = self.broker
        let read = holderReads.withLock { reads in
            if let running = reads[lockQueue] { return running }
            let started = Task { try await broker.uniqueHolder(lockQueue) }
            reads[lockQueue] = started
            return started
        }
        defer { holderReads.withLock { reads in if reads[lockQueue] == read { reads[lockQueue] = nil } } }
        return try await read.value
    }

    /// Tries at taking or reading a lock before giving up (random waits of
    /// up to 5 ms doubling to 250 ms: about 2 s in all, on average).
    static let uniqueAttempts = 20

    /// Declares a key's lock and holder queues unless this client did less
    /// than a window ago: a declaration renews their `x-expires` of twice
    /// the window, so no lock taken now can outlive its queue.
    private func declareUniqueLock(_ unique: UniqueKey, queue: String) async throws {
        let now = ContinuousClock.now
        if let until = uniqueDeclared.withLock({ $0[queue] }), now < until { return }
        try await broker.prepareUniqueLock(unique)
        uniqueDeclared.withLock { declared in
            // Bounded: those past their window go first; past that, all (declaring again costs one call).
            if declared.count >= 10_000 { declared = declared.filter { $0.value > now } }
            if declared.count >= 10_000 { declared.removeAll() }
            declared[queue] = now + unique.window
        }
    }
}
