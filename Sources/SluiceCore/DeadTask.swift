#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
public import SluiceWire

/// A dead task as its dead queue holds it: why it died, its last error,
/// its arguments and headers. What `sluice dead list` prints and the
/// coordinator's API (`GET /v1/queues/{queue}/dead`) answers.
public struct DeadTask: Sendable, Hashable, Codable {
    public var id: String
    public var name: String
    /// Sluice's reason (``DeadReason``), or the broker's (`delivery_limit` for a queue's delivery limit).
    public var reason: String
    /// The attempt that failed for good.
    public var attempt: Int
    public var error: String?
    public var errorType: String?
    public var deadAt: Date?
    /// The worker that dead-lettered it.
    public var worker: String?
    /// The message body (the task's JSON arguments), as text.
    public var arguments: String
    /// Every header, values as text.
    public var headers: [String: String]

    public init(properties: BasicProperties, body: [UInt8]) {
        let headers = properties.headers ?? [:]
        id = properties.messageId ?? ""
        name = properties.type ?? ""
        if let r = headers[WireHeader.deadReason]?.stringValue {
            reason = r
        } else if let r = headers["x-first-death-reason"]?.stringValue {
            reason = r == "delivery_limit" ? DeadReason.deliveryLimit.rawValue : r
        } else {
            reason = "unknown"
        }
        let attemptValue = headers[WireHeader.attempt]
        attempt = attemptValue?.intValue ?? attemptValue?.stringValue.flatMap { Int($0) } ?? 1
        error = headers[WireHeader.errorMessage]?.stringValue
        errorType = headers[WireHeader.errorType]?.stringValue
        deadAt = headers[WireHeader.deadAt]?.intValue.map { Date(epochMilliseconds: Int64($0)) }
        worker = headers[WireHeader.deadBy]?.stringValue
        arguments = String(decoding: body, as: UTF8.self)
        var text: [String: String] = [:]
        for (k, v) in headers { text[k] = v.stringValue ?? v.intValue.map(String.init) ?? "\(v)" }
        self.headers = text
    }
}
