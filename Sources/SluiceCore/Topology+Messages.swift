#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
public import SluiceWire

extension Topology {
    /// The message that puts `task` on its way: straight to its work queue, or
    /// into the delay tier that fits when it must wait until `notBefore`.
    public func message(for task: TaskEnvelope, now: Date = Date()) -> OutboundMessage {
        let (properties, body) = task.encode()
        // The level's routing key: the delay ladder dead-letters under it, so a delayed task keeps its level.
        let key = Self.levelName(task.queue, task.priority)
        if let notBefore = task.notBefore {
            let wait = Int(notBefore.epochMilliseconds - now.epochMilliseconds)
            // A few milliseconds early is on time.
            if wait > 20 {
                return OutboundMessage(exchange: delayExchange(delayTier(for: wait)), routingKey: key, body: body,
                                       properties: properties, mandatory: true)
            }
        }
        // An ordered task goes to its key's partition (a delayed one comes back to the queue unordered).
        if let orderKey = task.orderKey {
            return orderedMessage(queue: task.queue, key: orderKey, body: body, properties: properties)
        }
        return OutboundMessage(exchange: tasksExchange, routingKey: key, body: body, properties: properties, mandatory: true)
    }

    /// The dead-letter copy of a task (or of an undecodable message), with the
    /// reason and error in its headers. `trimmed`: the copy for a message
    /// whose full copy would not fit a frame: only Sluice's own headers of
    /// the original are kept (each under 1 KiB), the error text is shortened,
    /// and `sluice-trimmed-headers` counts what was dropped.
    /// `priority`: the level the task was on, kept in `sluice-priority` so
    /// that a replay puts it back there.
    public func deadMessage(queue: String, properties: BasicProperties, body: [UInt8], reason: DeadReason,
                            errorType: String?, errorMessage: String?, worker: String, at: Date = Date(),
                            signature: String? = nil, trimmed: Bool = false, priority: TaskPriority = .normal) -> OutboundMessage {
        var properties = properties
        var headers = properties.headers ?? [:]
        if trimmed {
            let original = headers
            headers = FieldTable(original.filter { WireHeader.isKnown($0.key) && $0.key.utf8.count + Self.valueBytes($0.value) <= 1024 }
                .map { ($0.key, $0.value) })
            headers[WireHeader.trimmedHeaders] = .int64(Int64(original.count - headers.count))
        }
        headers[WireHeader.deadReason] = .string(reason.rawValue)
        if let errorType { headers[WireHeader.errorType] = .string(String(errorType.prefix(trimmed ? 200 : 1000))) }
        if let errorMessage { headers[WireHeader.errorMessage] = .string(String(errorMessage.prefix(trimmed ? 1024 : 4096))) }
        headers[WireHeader.deadAt] = .int64(at.epochMilliseconds)
        headers[WireHeader.deadBy] = .string(worker)
        if let signature { headers[WireHeader.signature] = .string(signature) }
        // The level it was taken from, whatever a producer's header said: a replay goes back there.
        headers[WireHeader.priority] = priority == .normal ? nil : .string(priority.rawValue)
        properties.headers = headers
        properties.deliveryMode = 2
        return OutboundMessage(exchange: deadExchange, routingKey: queue, body: body, properties: properties, mandatory: true)
    }

    /// An event message on the events exchange. Mandatory: an event that no
    /// queue is bound for comes back unroutable, which tells the worker that
    /// nobody listens to its key (`EventDemand`).
    public func eventMessage(_ event: TaskEvent) -> OutboundMessage {
        OutboundMessage(exchange: eventsExchange, routingKey: eventRoutingKey(for: event),
                        body: event.jsonBytes(),
                        properties: BasicProperties(contentType: "application/json", deliveryMode: 2,
                                                    correlationId: event.workflowRunID,
                                                    // Derived from the task id, so bounded: a long id must not make it overflow.
                                                    messageId: WireLimits.boundedID(DottedText.join(event.taskID, String(event.attempt), event.kind.rawValue)),
                                                    type: Self.eventType(event.kind)),
                        mandatory: true)
    }

    /// An event message's `type`: literals, built for no event.
    private static func eventType(_ kind: TaskEvent.Kind) -> String {
        switch kind {
        case .received: "sluice.event.received"
        case .started: "sluice.event.started"
        case .succeeded: "sluice.event.succeeded"
        case .failed: "sluice.event.failed"
        case .retrying: "sluice.event.retrying"
        case .dead: "sluice.event.dead"
        case .queued: "sluice.event.queued"
        case .progress: "sluice.event.progress"
        }
    }

    /// A worker's heartbeat on the events exchange; it expires after a
    /// minute, so a monitor that starts late is not fed stale workers.
    public func heartbeatMessage(_ heartbeat: WorkerHeartbeat) -> OutboundMessage {
        OutboundMessage(exchange: eventsExchange, routingKey: workerHeartbeatRoutingKey, body: heartbeat.jsonBytes(),
                        properties: BasicProperties(contentType: "application/json", expiration: "60000",
                                                    type: "sluice.worker.heartbeat"))
    }

    /// The request that makes every worker send its heartbeat now.
    public func pingMessage() -> OutboundMessage {
        OutboundMessage(exchange: eventsExchange, routingKey: workerPingRoutingKey, body: Array("{}".utf8),
                        properties: BasicProperties(contentType: "application/json", expiration: "10000",
                                                    type: "sluice.worker.ping"))
    }

    /// A delivery sent on, unchanged, to the isolation queue of `queue`
    /// (see ``isolationQueue(_:)``).
    /// The level goes along in `sluice-priority`: one isolation queue holds
    /// every level of its queue.
    public func isolationMessage(queue: String, properties: BasicProperties, body: [UInt8],
                                 priority: TaskPriority = .normal) -> OutboundMessage {
        var properties = properties
        if priority != .normal || properties.headers?[WireHeader.priority] != nil {
            var headers = properties.headers ?? [:]
            headers[WireHeader.priority] = priority == .normal ? nil : .string(priority.rawValue)
            properties.headers = headers
        }
        return OutboundMessage(exchange: isolationExchange, routingKey: queue, body: body, properties: properties, mandatory: true)
    }

    /// The level a dead letter was on, for a replay: its `sluice-priority`
    /// header, else the level queue RabbitMQ dead-lettered it from
    /// (`x-death`), else normal.
    public func priority(ofDeadLetter headers: FieldTable) -> TaskPriority {
        if let level = headers[WireHeader.priority]?.stringValue.flatMap(TaskPriority.init(rawValue:)) { return level }
        if let queue = headers["x-death"]?.arrayValue?.first?.tableValue?["queue"]?.stringValue,
           let name = queueName(fromWorkQueue: queue), let level = Self.splitLevel(name).priority {
            return level
        }
        return .normal
    }

    /// A rough size of a header value: long strings and byte arrays by their
    /// length, anything nested as too big to keep in a trimmed copy.
    private static func valueBytes(_ value: FieldValue) -> Int {
        switch value {
        case .string(let s): s.utf8.count
        case .bytes(let b): b.count
        case .array, .table: 1 << 20
        default: 8
        }
    }
}

extension Topology {
    /// Where a dead letter on the coordinator's watch queue came from.
    public enum DeadLetterOrigin: Sendable, Equatable {
        /// RabbitMQ dead-lettered it from a work queue at the delivery limit.
        case deliveryLimit
        /// A worker published it (no `x-death`), with this reason.
        case worker(DeadReason)
        /// Anything else: dead-lettered by the broker for another reason (a
        /// producer can make a message expire), or without a reason.
        case other(String)
    }

    /// Reads the broker's own record first: `x-death[0]` is the latest death
    /// and only the broker writes it, so a forged `sluice-dead-reason`
    /// on a message that merely expired does not count.
    public func deadLetterOrigin(_ headers: FieldTable) -> DeadLetterOrigin {
        if let deaths = headers["x-death"]?.arrayValue {
            guard let latest = deaths.first?.tableValue else { return .other("an empty x-death header") }
            let reason = latest["reason"]?.stringValue ?? ""
            let queue = latest["queue"]?.stringValue ?? ""
            if reason == "delivery_limit", queueName(fromWorkQueue: queue) != nil || queueKind(queue)?.kind == .isolation
                || orderPartition(fromQueue: queue) != nil {
                return .deliveryLimit
            }
            // A task that waited in the delay ladder carries the ladder's
            // expiry; a worker dead-lettered it later, with its own reason.
            if reason != "expired" || queueKind(queue)?.kind != .delay {
                return .other("dead-lettered by the broker from \(queue) as \(reason)")
            }
        }
        guard let reason = headers[WireHeader.deadReason]?.stringValue.flatMap(DeadReason.init(rawValue:)) else {
            return .other("no dead reason")
        }
        return .worker(reason)
    }
}
