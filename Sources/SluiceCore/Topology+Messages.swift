import Foundation
import SluiceAMQP

extension Topology {
    /// The message that puts `task` on its way: straight to its work queue, or
    /// into the delay tier that fits when it must wait until `notBefore`.
    public func message(for task: TaskEnvelope, now: Date = Date()) -> OutboundMessage {
        let (properties, body) = task.encode()
        if let notBefore = task.notBefore {
            let wait = Int(notBefore.epochMilliseconds - now.epochMilliseconds)
            // A few milliseconds early is on time.
            if wait > 20 {
                return OutboundMessage(exchange: delayExchange(delayTier(for: wait)), routingKey: task.queue, body: body,
                                       properties: properties, mandatory: true)
            }
        }
        return OutboundMessage(exchange: tasksExchange, routingKey: task.queue, body: body, properties: properties, mandatory: true)
    }

    /// The dead-letter copy of a task (or of an undecodable message), with the
    /// reason and error in its headers.
    public func deadMessage(queue: String, properties: BasicProperties, body: [UInt8], reason: DeadReason,
                            errorType: String?, errorMessage: String?, worker: String, at: Date = Date()) -> OutboundMessage {
        var properties = properties
        var headers = properties.headers ?? [:]
        headers[WireHeader.deadReason] = .string(reason.rawValue)
        if let errorType { headers[WireHeader.errorType] = .string(errorType) }
        if let errorMessage { headers[WireHeader.errorMessage] = .string(String(errorMessage.prefix(4096))) }
        headers[WireHeader.deadAt] = .int64(at.epochMilliseconds)
        headers[WireHeader.deadBy] = .string(worker)
        properties.headers = headers
        properties.deliveryMode = 2
        return OutboundMessage(exchange: deadExchange, routingKey: queue, body: body, properties: properties, mandatory: true)
    }

    /// An event message on the events exchange.
    public func eventMessage(_ event: TaskEvent) -> OutboundMessage {
        OutboundMessage(exchange: eventsExchange, routingKey: eventRoutingKey(queue: event.queue, kind: event.kind),
                        body: event.jsonBytes(),
                        properties: BasicProperties(contentType: "application/json", deliveryMode: 2,
                                                    correlationId: event.workflowRunID, messageId: "\(event.taskID).\(event.attempt).\(event.kind.rawValue)",
                                                    type: "sluice.event.\(event.kind.rawValue)"))
    }
}
