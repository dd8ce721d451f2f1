#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
public import SluiceWire

/// Several workflow step outcome events in one message: a JSON array of the
/// events' own JSON objects, each signed as it would be alone. A worker packs
/// the outcomes that become ready while its previous pack for the same key
/// awaits its confirm, so under load one broker message carries many step
/// outcomes (each a quorum-queue publish, delivery and ack saved), and alone
/// an outcome still goes at once. Only step tasks whose coordinator asked for
/// it (``TaskEnvelope/eventPackBucket``) are packed; plain tasks' events never are.
public enum EventPack {
    /// At most this many events in one pack.
    public static let maxEvents = 256
    /// A pack grows past this many bytes of events only with its first event.
    public static let maxBytes = 1 << 20

    /// The pack's message: on the events exchange, mandatory and persistent as one event is.
    public static func message(exchange: String, routingKey: String, bodies: [[UInt8]]) -> OutboundMessage {
        var body: [UInt8] = []
        body.reserveCapacity(bodies.reduce(2) { $0 + $1.count + 1 })
        body.append(UInt8(ascii: "["))
        for (i, event) in bodies.enumerated() {
            if i > 0 { body.append(UInt8(ascii: ",")) }
            body.append(contentsOf: event)
        }
        body.append(UInt8(ascii: "]"))
        return OutboundMessage(exchange: exchange, routingKey: routingKey, body: body,
                               properties: BasicProperties(contentType: "application/json", deliveryMode: 2, type: "sluice.event.pack"),
                               mandatory: true)
    }

    /// The events of a pack, in order. Throws if the body is not a JSON array of events.
    public static func decode(_ bytes: [UInt8]) throws -> [TaskEvent] {
        try TaskEvent.decodeArray(bytes)
    }

    /// The events of a pack that are valid, in order, and how many elements
    /// were not: one bad element does not cost the others. A body that is not
    /// a JSON array counts as one invalid element.
    public static func decodeEach(_ bytes: [UInt8]) -> (events: [TaskEvent], invalid: Int) {
        if let events = try? decode(bytes) { return (events, 0) }
        // Rare (a forged or broken pack): each element on its own.
        guard let elements = TaskEvent.decodeEachOfArray(bytes) else { return ([], 1) }
        let events = elements.compactMap { $0 }
        return (events, elements.count - events.count)
    }
}
