import SluiceCore
import SluiceWire
import Synchronization

/// Sends outcome events in packs (``EventPack``): per pack key, one
/// pack is in flight at a time; events that become ready meanwhile wait and
/// go together in the next, as soon as the broker confirmed the previous one.
/// An event alone goes at once. Each caller returns when the pack that
/// carried its event is confirmed (or throws what the publish threw), so a
/// delivery is still acknowledged only after its outcome is safe. An event
/// whose delivery came on a connection since lost is not sent (it fails with
/// `staleDelivery`), and a pack goes out only on the connection its events'
/// deliveries came on (``Broker/publish(_:settling:)``).
final class EventPacker: Sendable {
    /// Publishes one message, confirmed, as the outcome of `settling` (one of
    /// the pack's deliveries: all of them came on the same connection);
    /// returns false if the broker found no queue bound for it; throws what refused it.
    typealias Send = @Sendable (OutboundMessage, _ settling: BrokerDelivery?) async throws -> Bool

    private struct Waiting {
        var body: [UInt8]
        var delivery: BrokerDelivery?
        var continuation: CheckedContinuation<Bool, any Error>
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
            let batch: [Waiting]? = lanes.withLock { lanes in
                lanes[message.routingKey, default: Lane()].waiting.append(Waiting(body: message.body, delivery: delivery,
                                                                                  continuation: continuation))
                guard !lanes[message.routingKey]!.sending else { return nil }
                lanes[message.routingKey]!.sending = true
                return take(&lanes[message.routingKey]!)
            }
            // In a task of its own: a caller's cancellation must not fail the
            // others' events in the same pack.
            if let batch { Task { await self.flush(batch, exchange: message.exchange, routingKey: message.routingKey) } }
        }
    }

    /// Sends packs for the key until nothing waits.
    private func flush(_ first: [Waiting], exchange: String, routingKey: String) async {
        var batch = first
        while true {
            // Events that waited while their connection was lost stay out: their tasks come again.
            var live: [Waiting] = []
            live.reserveCapacity(batch.count)
            for waiting in batch {
                if waiting.delivery?.isStale == true { waiting.continuation.resume(throwing: PublishFailure.staleOutcome) } else { live.append(waiting) }
            }
            if !live.isEmpty {
                let pack = EventPack.message(exchange: exchange, routingKey: routingKey, bodies: live.map(\.body))
                do {
                    let routed = try await send(pack, live.first { $0.delivery != nil }?.delivery)
                    for waiting in live { waiting.continuation.resume(returning: routed) }
                } catch {
                    for waiting in live { waiting.continuation.resume(throwing: error) }
                }
            }
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
        let batch = Array(lane.waiting.prefix(count))
        lane.waiting.removeFirst(count)
        return batch
    }
}
