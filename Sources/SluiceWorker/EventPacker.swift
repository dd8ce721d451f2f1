import SluiceCore
import SluiceWire
import Synchronization

/// Sends outcome events in packs (``EventPack``): per pack key, one
/// pack is in flight at a time; events that become ready meanwhile wait and
/// go together in the next, as soon as the broker confirmed the previous one.
/// An event alone goes at once. Each caller returns when the pack that
/// carried its event is confirmed (or throws what the publish threw), or,
/// having enqueued it without waiting, is told then; so a delivery is still
/// acknowledged only after its outcome is safe. An event
/// whose delivery came on a connection since lost is not sent (it fails with
/// `staleDelivery`), and a pack goes out only on the connection its events'
/// deliveries came on (``Broker/publish(_:settling:)``).
final class EventPacker: Sendable {
    /// Publishes one message, confirmed, as the outcome of `settling` (one of
    /// the pack's deliveries: all of them came on the same connection);
    /// returns false if the broker found no queue bound for it; throws what refused it.
    typealias Send = @Sendable (OutboundMessage, _ settling: BrokerDelivery?) async throws -> Bool

    /// Told once the pack carrying an event is confirmed (whether it reached
    /// a queue) or failed; see ``enqueue(_:settling:then:)``.
    typealias Settle = @Sendable (Result<Bool, any Error>) async -> Void

    /// Who learns how an event's pack went.
    private enum Waiter {
        /// A caller of ``publish(_:settling:)``, suspended until then.
        case caller(CheckedContinuation<Bool, any Error>)
        /// A caller of ``enqueue(_:settling:then:)``, which did not wait.
        case settle(Settle)
    }

    private struct Waiting {
        var body: [UInt8]
        var delivery: BrokerDelivery?
        var waiter: Waiter
    }

    private struct Lane {
        var waiting: [Waiting] = []
        var sending = false
    }

    private let send: Send
    private let maxEvents: Int
    private let maxBytes: Int
    private let lanes = Mutex<[String: Lane]>([:])

    init(maxEvents: Int = EventPack.maxEvents, maxBytes: Int = EventPack.maxBytes, send: @escaping Send) {
        self.send = send
        self.maxEvents = maxEvents
        self.maxBytes = maxBytes
    }

    /// Sends `message`'s body in a pack on its exchange and routing key, as
    /// the outcome of `delivery`; returns whether the pack reached a queue.
    @discardableResult
    func publish(_ message: OutboundMessage, settling delivery: BrokerDelivery? = nil) async throws -> Bool {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Bool, any Error>) in
            add(Waiting(body: message.body, delivery: delivery, waiter: .caller(continuation)), exchange: message.exchange, routingKey: message.routingKey)
        }
    }

    /// Sends `message`'s body in a pack as ``publish(_:settling:)`` does,
    /// without waiting: `settle` is told how its pack went (a lost
    /// connection's delivery: `staleOutcome`). The settlements of one pack
    /// run one after another, in one task, after its confirm: a delivery
    /// whose outcome this is can be acknowledged there, and the task that
    /// ran it need not stay suspended until then.
    func enqueue(_ message: OutboundMessage, settling delivery: BrokerDelivery?, then settle: @escaping Settle) {
        add(Waiting(body: message.body, delivery: delivery, waiter: .settle(settle)), exchange: message.exchange, routingKey: message.routingKey)
    }

    private func add(_ waiting: Waiting, exchange: String, routingKey: String) {
        // One look-up of the lane (this runs for every plain task's outcome).
        let batch: [Waiting]? = lanes.withLock { lanes in add(waiting, to: &lanes[routingKey, default: Lane()]) }
        // In a task of its own: a caller's cancellation must not fail the
        // others' events in the same pack.
        if let batch { Task { await self.flush(batch, exchange: exchange, routingKey: routingKey) } }
    }

    /// Queues an event on its lane; returns the first pack to send if none is in flight.
    private func add(_ waiting: Waiting, to lane: inout Lane) -> [Waiting]? {
        lane.waiting.append(waiting)
        guard !lane.sending else { return nil }
        lane.sending = true
        return take(&lane)
    }

    /// Sends packs for the key until nothing waits. The events are read in
    /// place, not copied (each holds its task's delivery: a dozen references).
    private func flush(_ first: [Waiting], exchange: String, routingKey: String) async {
        var batch = first
        while true {
            var settles: [(Settle, Result<Bool, any Error>)] = []
            // Events that waited while their connection was lost stay out: their tasks come again.
            // (Asked once per event: a delivery may go stale between two looks.)
            var stale: [Int] = []
            for i in batch.indices where batch[i].delivery?.isStale == true { stale.append(i) }
            for i in stale.reversed() { Self.tell(batch.remove(at: i).waiter, .failure(PublishFailure.staleOutcome), &settles) }
            Self.run(&settles)
            if !batch.isEmpty {
                var bodies: [[UInt8]] = []
                bodies.reserveCapacity(batch.count)
                for i in batch.indices { bodies.append(batch[i].body) }
                let settling = batch.firstIndex { $0.delivery != nil }.flatMap { batch[$0].delivery }
                let pack = EventPack.message(exchange: exchange, routingKey: routingKey, bodies: bodies)
                let result: Result<Bool, any Error>
                do {
                    result = .success(try await send(pack, settling))
                } catch {
                    result = .failure(error)
                }
                for i in batch.indices { Self.tell(batch[i].waiter, result, &settles) }
            }
            Self.run(&settles)
            let next: [Waiting]? = lanes.withLock { lanes in
                guard !lanes[routingKey]!.waiting.isEmpty else {
                    lanes[routingKey] = nil
                    return nil
                }
                return take(&lanes[routingKey]!)
            }
            guard let next else { return }
            batch = next
        }
    }

    /// Runs settlements in a task of their own, one after another: the
    /// next pack need not wait for their acknowledgements.
    private static func run(_ settles: inout [(Settle, Result<Bool, any Error>)]) {
        guard !settles.isEmpty else { return }
        let due = settles
        settles = []
        Task { for (settle, result) in due { await settle(result) } }
    }

    private static func tell(_ waiter: Waiter, _ result: Result<Bool, any Error>, _ settles: inout [(Settle, Result<Bool, any Error>)]) {
        switch waiter {
        case .caller(let continuation): continuation.resume(with: result)
        case .settle(let settle): settles.append((settle, result))
        }
    }

    /// Events of `routingKey` waiting for the pack in flight to be confirmed.
    func waitingCount(routingKey: String) -> Int {
        lanes.withLock { $0[routingKey]?.waiting.count ?? 0 }
    }

    /// The next pack's events: the oldest first, up to the count and byte limits (at least one).
    private func take(_ lane: inout Lane) -> [Waiting] {
        var count = 0
        var bytes = 0
        for waiting in lane.waiting {
            if count > 0 && (count == maxEvents || bytes + waiting.body.count > maxBytes) { break }
            count += 1
            bytes += waiting.body.count
        }
        // Usually all of them: the lane's array is handed over whole.
        if count == lane.waiting.count {
            var batch: [Waiting] = []
            swap(&batch, &lane.waiting)
            return batch
        }
        let batch = Array(lane.waiting.prefix(count))
        lane.waiting.removeFirst(count)
        return batch
    }
}
