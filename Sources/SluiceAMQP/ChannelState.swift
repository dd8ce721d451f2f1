import DequeModule
import SluiceWire

/// How a publish's confirmation reaches its caller.
enum ConfirmWaiter {
    case single(PendingResult<Void>)
    case batch(BatchConfirmation, index: Int)

    func settle(_ result: Result<Void, AMQPError>) {
        switch self {
        case .single(let pending): pending.resume(with: result.mapError { $0 as any Error })
        case .batch(let batch, let index): batch.settle(index, result)
        }
    }
}

/// Collects the outcomes of a batch of publishes and resumes the caller once
/// every one is settled.
final class BatchConfirmation: @unchecked Sendable {
    // Only touched on the connection thread (settle) and, after `pending` was
    // resumed, by the caller; the resume is the hand-over.
    private var results: [Result<Void, AMQPError>]
    private var remaining: Int
    let pending: PendingResult<[Result<Void, AMQPError>]>

    init(count: Int, pending: PendingResult<[Result<Void, AMQPError>]>) {
        results = Array(repeating: .success(()), count: count)
        remaining = count
        self.pending = pending
        if count == 0 { pending.succeed([]) }
    }

    func settle(_ index: Int, _ result: Result<Void, AMQPError>) {
        results[index] = result
        remaining -= 1
        if remaining == 0 { pending.succeed(results) }
    }
}

/// A publish waiting to be sent (confirm window full, or connection blocked).
struct PublishRequest {
    var message: OutboundMessage
    var waiter: ConfirmWaiter?
    /// The connection generation the publish belongs to (the outcome of a
    /// delivery received then); nil for a publish that may go out on any.
    var generation: UInt64?
}

/// One consumer's registration, kept to restore it after a reconnect.
struct ConsumerState {
    var tag: String
    var queue: String
    var noAck: Bool
    var exclusive: Bool
    var arguments: FieldTable
    var deliveries: DeliveryQueue
}

/// A message being assembled from its method, header and body frames.
struct IncomingContent {
    enum Kind {
        case deliver(consumerTag: String, deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String)
        case returned(replyCode: UInt16, replyText: String, exchange: String, routingKey: String)
        case got(deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String, messageCount: UInt32, noAck: Bool)
    }

    var kind: Kind
    var properties: BasicProperties?
    var bodySize: Int = 0
    var body: [UInt8] = []

    var isComplete: Bool { properties != nil && body.count >= bodySize }
}

/// Everything about one channel, owned by the connection thread.
///
/// `@unchecked Sendable` only so that an ``AMQPChannel`` handle can carry a
/// reference for identity; its fields are read and written on the connection
/// thread alone.
final class ChannelState: @unchecked Sendable {
    let id: UInt16
    let confirms: Bool
    var isOpen = true
    /// Why the channel closed, for later calls on it.
    var closeError: AMQPError?
    var tracker = ConfirmTracker<ConfirmWaiter>()
    var held = Deque<PublishRequest>()
    var prefetch: (count: UInt16, global: Bool)?
    var consumers: [String: ConsumerState] = [:]
    var content: IncomingContent?
    /// Delivery tags handed out and not yet acked, nacked or rejected.
    var unacked: [UInt64: String?] = [:]
    /// Consumers with no-ack cancelled by us: stragglers for them are dropped, not rejected.
    var cancelledNoAckTags: Set<String> = []
    /// The message a `basic.get` is assembling.
    var gotDelivery: AMQPDelivery?
    /// The AMQPChannel handle, for deliveries (weak: the user owns it).
    weak var handle: AMQPChannel?

    init(id: UInt16, confirms: Bool) {
        self.id = id
        self.confirms = confirms
    }

    /// Forgets acknowledged tags (all up to `tag` with `multiple`).
    func settleDeliveries(upTo tag: UInt64, multiple: Bool) {
        if multiple {
            unacked = unacked.filter { $0.key > tag }
        } else {
            unacked.removeValue(forKey: tag)
        }
    }
}
