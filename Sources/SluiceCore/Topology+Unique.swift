import Crypto
public import SluiceWire

/// Unique tasks: a lock per key, kept by the broker (see ``UniqueKey``).
///
/// A key's lock is a classic queue that holds at most one message and
/// refuses a second (`x-max-length: 1`, `x-overflow: reject-publish`): a
/// producer takes the lock by publishing to it with a confirm; a `nack`
/// means someone holds it. The message expires with the window
/// (`x-message-ttl`) and the queue some time after its last use
/// (`x-expires`). Next to it, a holder queue keeps the holder's task id,
/// which a producer refused the lock reads: reading the lock queue itself
/// would take its message out of the count that refuses a second one.
extension Topology {
    /// `<prefix>.unique`: the direct exchange locks and holders are published
    /// to (routing key: the queue's own name). An exchange of its own, so
    /// that a producer's account can be allowed locks without any other queue.
    public var uniqueExchange: String { "\(prefix).unique" }

    public var uniqueExchangeDeclaration: ExchangeDeclaration {
        ExchangeDeclaration(name: uniqueExchange, type: "direct")
    }

    /// `<prefix>.unique.<window ms>.<40 hex digits of the key's SHA-256>`:
    /// the window is in the name because RabbitMQ refuses to declare a
    /// queue again with other arguments.
    public func uniqueLockQueue(_ key: UniqueKey) -> String {
        "\(prefix).unique.\(key.windowMilliseconds).\(Hex.encode(SHA256.hash(data: Array(key.key.utf8)).prefix(20)))"
    }

    /// The queue that keeps the holder's task id, next to a lock queue.
    public func uniqueHolderQueue(ofLock lock: String) -> String { "\(lock).holder" }

    /// Whether `name` is one of this prefix's lock queues (a worker gives
    /// back only those, whatever a task's header names).
    public func isUniqueLockQueue(_ name: String) -> Bool {
        let own = "\(prefix).unique."
        guard name.hasPrefix(own) else { return false }
        let parts = name.utf8.dropFirst(own.utf8.count).split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].allSatisfy({ $0 >= 48 && $0 <= 57 }), !parts[0].isEmpty, parts[1].count == 40 else { return false }
        return parts[1].allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// A lock queue: one message at most, a second refused; the message
    /// lives the window; the queue goes after twice the window unused (a
    /// declaration or a read renews it). A producer declares the queue
    /// again unless it did so less than a window ago, so a lock it takes
    /// always expires before its queue could.
    public func uniqueLockQueueDeclaration(_ key: UniqueKey) -> QueueDeclaration {
        QueueDeclaration(name: uniqueLockQueue(key), arguments: [
            "x-queue-type": "classic",
            "x-max-length": .int64(1),
            "x-overflow": "reject-publish",
            "x-message-ttl": .int64(key.windowMilliseconds),
            "x-expires": .int64(2 * key.windowMilliseconds),
        ])
    }

    /// A holder queue: the newest holder's id (older ones dropped), for as
    /// long as the lock can live, in ``uniqueHolderCopies`` copies.
    public func uniqueHolderQueueDeclaration(_ key: UniqueKey) -> QueueDeclaration {
        QueueDeclaration(name: uniqueHolderQueue(ofLock: uniqueLockQueue(key)), arguments: [
            "x-queue-type": "classic",
            "x-max-length": .int64(Int64(Self.uniqueHolderCopies)),
            "x-message-ttl": .int64(key.windowMilliseconds),
            "x-expires": .int64(2 * key.windowMilliseconds),
        ])
    }

    /// The lock for `taskID`, into `lockQueue` (mandatory: a missing queue
    /// makes it unroutable).
    public func uniqueLockMessage(lockQueue: String, taskID: String) -> OutboundMessage {
        OutboundMessage(exchange: uniqueExchange, routingKey: lockQueue, body: Array(taskID.utf8),
                        properties: BasicProperties(contentType: "text/plain", deliveryMode: 2, type: "sluice.unique.lock"),
                        mandatory: true)
    }

    /// The holder's id for the holder queue beside `lockQueue`, published
    /// once the lock is taken (``uniqueHolderCopies`` times).
    public func uniqueHolderMessages(lockQueue: String, taskID: String) -> [OutboundMessage] {
        let message = OutboundMessage(exchange: uniqueExchange, routingKey: uniqueHolderQueue(ofLock: lockQueue), body: Array(taskID.utf8),
                                      properties: BasicProperties(contentType: "text/plain", deliveryMode: 2, type: "sluice.unique.holder"),
                                      mandatory: true)
        return Array(repeating: message, count: Self.uniqueHolderCopies)
    }

    /// Copies of the holder's id in its queue: a reader takes one out while
    /// it reads (`basic.get`, then puts it back), so that many producers
    /// refused at once can each read one instead of waiting in turn.
    public static let uniqueHolderCopies = 8
}
