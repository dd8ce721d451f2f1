import Synchronization

/// Fans connection events out to every subscriber.
final class EventHub: Sendable {
    private let subscribers = Mutex<(next: Int, continuations: [Int: AsyncStream<AMQPConnectionEvent>.Continuation])>((0, [:]))

    func subscribe() -> AsyncStream<AMQPConnectionEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: AMQPConnectionEvent.self, bufferingPolicy: .bufferingNewest(256))
        let id = subscribers.withLock { s -> Int in
            let id = s.next
            s.next += 1
            s.continuations[id] = continuation
            return id
        }
        continuation.onTermination = { [weak self] _ in
            self?.subscribers.withLock { _ = $0.continuations.removeValue(forKey: id) }
        }
        return stream
    }

    func emit(_ event: AMQPConnectionEvent) {
        let targets = subscribers.withLock { Array($0.continuations.values) }
        for c in targets { c.yield(event) }
    }

    func finish() {
        let targets = subscribers.withLock { s -> [AsyncStream<AMQPConnectionEvent>.Continuation] in
            let all = Array(s.continuations.values)
            s.continuations.removeAll()
            return all
        }
        for c in targets { c.finish() }
    }
}

/// A flag read from any thread, written by the connection thread.
final class AtomicFlag<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ initial: Value) { value = Mutex(initial) }
    func load() -> Value { value.withLock { $0 } }
    func store(_ newValue: Value) { value.withLock { $0 = newValue } }
}
