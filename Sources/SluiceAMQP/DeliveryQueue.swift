import Synchronization

/// One consumer's deliveries on their way from the connection thread to the
/// task that iterates them.
///
/// Not an `AsyncThrowingStream`: the standard library's stream is generic
/// code compiled into the runtime, so every yield and every `next()` looked
/// up generic metadata and went through several async frames (together
/// about a tenth of a worker's instructions per task, measured with
/// callgrind). This one is written for `AMQPDelivery` only.
///
/// Same contract as the stream it replaces: unbounded (the channel's prefetch
/// bounds it), ends cleanly or with an error (thrown once) after what was
/// buffered, and when the task reading it is cancelled it reports
/// termination once through `onTermination` and refuses later deliveries
/// (the connection thread rejects those back to the queue); what was
/// already buffered is still read. One reader at a time; readers share the
/// buffer (a new iterator continues where the last one stopped).
final class DeliveryQueue: Sendable {
    enum YieldResult { case enqueued, terminated }

    private struct State {
        /// Deliveries not yet read are `buffer[head...]`; the array is
        /// emptied (its capacity kept) when all are read: no allocation per delivery.
        var buffer: [AMQPDelivery] = []
        var head = 0
        var waiter: UnsafeContinuation<Void, Never>?
        /// Set by ``finish(throwing:)``: nil error is a clean end.
        var finished: (any Error)?? = nil
        /// The reading task was cancelled: no more deliveries are taken.
        var terminated = false
        var onTermination: (@Sendable () -> Void)?

        var isEmpty: Bool { head == buffer.count }
    }

    private let state = Mutex(State())

    /// Called once, outside the lock, when the reading task is cancelled before the end.
    func setOnTermination(_ body: @escaping @Sendable () -> Void) {
        let runNow = state.withLock { s -> Bool in
            if s.terminated { return s.finished == nil }
            s.onTermination = body
            return false
        }
        if runNow { body() }
    }

    /// From the connection thread.
    func yield(_ delivery: AMQPDelivery) -> YieldResult {
        let (result, waiter) = state.withLock { s -> (YieldResult, UnsafeContinuation<Void, Never>?) in
            guard !s.terminated, s.finished == nil else { return (.terminated, nil) }
            s.buffer.append(delivery)
            defer { s.waiter = nil }
            return (.enqueued, s.waiter)
        }
        waiter?.resume()
        return result
    }

    /// Ends the sequence after what is buffered (with `error`, it throws it then).
    func finish(throwing error: (any Error)? = nil) {
        let waiter = state.withLock { s -> UnsafeContinuation<Void, Never>? in
            if s.finished == nil { s.finished = .some(error) }
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    /// The reading task was cancelled: refuse what comes next and tell the
    /// owner (what is buffered was accepted, so it is still read: dropping it
    /// would leave those deliveries unacknowledged on the channel).
    func terminate() {
        let (waiter, handler) = state.withLock { s -> (UnsafeContinuation<Void, Never>?, (@Sendable () -> Void)?) in
            if s.terminated { return (nil, nil) }
            s.terminated = true
            defer { s.waiter = nil; s.onTermination = nil }
            // A finished queue does not report termination (nor did the stream).
            return (s.waiter, s.finished == nil ? s.onTermination : nil)
        }
        waiter?.resume()
        handler?()
    }

    /// What one look at the queue finds.
    enum Take {
        case delivery(AMQPDelivery)
        case end((any Error)?)
        case empty
    }

    func take() -> Take {
        state.withLock { s in
            if !s.isEmpty {
                let delivery = s.buffer[s.head]
                s.head += 1
                if s.isEmpty {
                    s.buffer.removeAll(keepingCapacity: true)
                    s.head = 0
                }
                return .delivery(delivery)
            }
            if s.terminated { return .end(nil) }
            if let finished = s.finished {
                // An error is thrown once; after it the sequence just ends.
                if finished != nil { s.finished = .some(nil) }
                return .end(finished)
            }
            return .empty
        }
    }

    /// Waits until something is buffered, the queue ends, or the task is cancelled.
    func wait() async {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if !s.isEmpty || s.terminated || s.finished != nil { return true }
                    precondition(s.waiter == nil, "two tasks read one consumer's deliveries at once")
                    s.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            terminate()
        }
    }
}

/// Reads one consumer's deliveries (``AMQPConsumer/makeReader()``); one
/// reader at a time. Cancelling the task that reads stops the consumer.
public final class AMQPDeliveryReader {
    private let queue: DeliveryQueue
    /// Past the end (or the error, thrown once): nil from now on.
    private var ended = false

    init(_ queue: DeliveryQueue) { self.queue = queue }

    /// The next delivery; nil at the end (consumer cancelled, or the task
    /// reading was cancelled); throws when the broker cancelled the
    /// consumer or the channel closed.
    public func next() async throws -> AMQPDelivery? {
        // Checked on every call, not only when nothing is buffered: a busy
        // consumer's buffer may never run dry.
        if Task.isCancelled { queue.terminate() }
        while !ended {
            switch queue.take() {
            case .delivery(let delivery):
                return delivery
            case .end(let error):
                ended = true
                if let error { throw error }
            case .empty:
                // (Cancelled: `wait` returns at once, and `take` ends.)
                await queue.wait()
            }
        }
        return nil
    }
}
