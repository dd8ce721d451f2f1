import SluiceCore
import Synchronization

/// Deliveries received and not yet applied; `take` returns all of them (up to a limit) at once.
final class DeliveryBuffer: Sendable {
    private struct State {
        var items: [BrokerDelivery] = []
        var finished = false
        var error: (any Error)?
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    func push(_ delivery: BrokerDelivery) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.items.append(delivery)
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    func finish(_ error: (any Error)?) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.finished = true
            s.error = error
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    /// Waits for at least one delivery; nil when the consumer ended (throws its error, if any).
    func take(max: Int) async throws -> [BrokerDelivery]? {
        while true {
            try Task.checkCancellation()
            let result = state.withLock { s -> (batch: [BrokerDelivery]?, done: Bool, error: (any Error)?) in
                if !s.items.isEmpty {
                    let n = min(max, s.items.count)
                    let batch = Array(s.items.prefix(n))
                    s.items.removeFirst(n)
                    return (batch, false, nil)
                }
                return (nil, s.finished, s.error)
            }
            if let batch = result.batch { return batch }
            if result.done {
                if let error = result.error { throw error }
                return nil
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = state.withLock { s -> Bool in
                        if !s.items.isEmpty || s.finished { return true }
                        s.waiter = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            } onCancel: {
                let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
                    defer { s.waiter = nil }
                    return s.waiter
                }
                waiter?.resume()
            }
        }
    }
}

extension DeliveryBuffer {
    /// Reads `consumer` in one task and hands whatever has arrived (up to
    /// `max`) to `apply` as one batch in another: one commit for many
    /// deliveries when they come fast. Returns when the consumer ends;
    /// throws its error, or `apply`'s.
    static func applyInBatches(from consumer: BrokerConsumer, max: Int,
                               _ apply: @escaping @Sendable ([BrokerDelivery]) async throws -> Void) async throws {
        let buffer = DeliveryBuffer()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await delivery in consumer { buffer.push(delivery) }
                    buffer.finish(nil)
                } catch {
                    buffer.finish(error)
                }
            }
            group.addTask {
                while let batch = try await buffer.take(max: max) { try await apply(batch) }
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }
}
