public import Foundation

/// What happened to a task, published on the events exchange as JSON with
/// routing key `<queue>.<kind>`.
public struct TaskEvent: Sendable, Hashable, Codable {
    /// Event kinds, also the last routing-key word.
    public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
        case received, started, succeeded, failed, retrying, dead
    }

    public var kind: Kind
    public var taskID: String
    public var taskName: String
    public var queue: String
    public var attempt: Int
    /// When it happened.
    public var at: Date
    /// `succeeded`: the handler's result (JSON text).
    public var result: String?
    /// `failed`, `retrying`, `dead`: the error.
    public var errorType: String?
    public var errorMessage: String?
    /// `retrying`: the wait before the next attempt.
    public var nextDelayMilliseconds: Int?
    /// `dead`: why.
    public var deadReason: DeadReason?
    /// Workflow context, when the task is a step.
    public var workflowRunID: String?
    public var workflowStep: String?
    /// Who reported it (`host:pid`).
    public var worker: String?
    /// `succeeded`/`failed`: how long the handler ran, in milliseconds.
    public var durationMilliseconds: Double?
    /// Outcomes of a run (`succeeded`, `retrying`, `dead` after running): how
    /// long the attempt waited between becoming due (enqueued, or its
    /// not-before time) and its start, in milliseconds. Carried here so that
    /// monitoring needs no `started` events.
    public var waitMilliseconds: Double?
    /// HMAC-SHA256 of the outcome, hex, when workers share an event key
    /// with the coordinator (see ``EventSigner``).
    public var signature: String?

    public init(kind: Kind, task: TaskEnvelope, at: Date = Date(), worker: String? = nil) {
        self.kind = kind
        self.taskID = task.id
        self.taskName = task.name
        self.queue = task.queue
        self.attempt = task.attempt
        self.at = at
        self.workflowRunID = task.workflowRunID
        self.workflowStep = task.workflowStep
        self.worker = worker
    }

    /// JSON for the wire: keys sorted, `at` in milliseconds since the epoch.
    /// Written by hand: JSONEncoder was the largest cost of a worker's task.
    public func jsonBytes() -> [UInt8] {
        var w = JSONObjectWriter()
        w.field("at", at.epochMilliseconds)
        w.field("attempt", Int64(attempt))
        if let deadReason { w.field("deadReason", deadReason.rawValue) }
        if let durationMilliseconds { w.field("durationMilliseconds", durationMilliseconds) }
        if let errorMessage { w.field("errorMessage", errorMessage) }
        if let errorType { w.field("errorType", errorType) }
        w.field("kind", kind.rawValue)
        if let nextDelayMilliseconds { w.field("nextDelayMilliseconds", Int64(nextDelayMilliseconds)) }
        w.field("queue", queue)
        if let result { w.field("result", result) }
        if let signature { w.field("signature", signature) }
        w.field("taskID", taskID)
        w.field("taskName", taskName)
        if let waitMilliseconds { w.field("waitMilliseconds", waitMilliseconds) }
        if let worker { w.field("worker", worker) }
        if let workflowRunID { w.field("workflowRunID", workflowRunID) }
        if let workflowStep { w.field("workflowStep", workflowStep) }
        return w.finish()
    }

    /// Reads an event from its JSON.
    public static func decode(_ bytes: [UInt8]) throws -> TaskEvent {
        try decoder.decode(TaskEvent.self, from: Data(bytes))
    }

    private static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            Date(epochMilliseconds: try decoder.singleValueContainer().decode(Int64.self))
        }
        return d
    }()
}

/// Writes one flat JSON object, keys in the order given.
struct JSONObjectWriter {
    private var bytes: [UInt8] = [UInt8(ascii: "{")]

    init() { bytes.reserveCapacity(256) }

    private mutating func key(_ k: String) {
        if bytes.count > 1 { bytes.append(UInt8(ascii: ",")) }
        string(k)
        bytes.append(UInt8(ascii: ":"))
    }

    mutating func field(_ k: String, _ value: String) { key(k); string(value) }
    mutating func field(_ k: String, _ value: Int64) { key(k); bytes.append(contentsOf: String(value).utf8) }
    mutating func field(_ k: String, _ value: Double) {
        key(k)
        bytes.append(contentsOf: (value.isFinite ? "\(value)" : "0").utf8)
    }

    private mutating func string(_ s: String) { JSONText.appendString(s, to: &bytes) }

    mutating func finish() -> [UInt8] {
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }
}

/// JSON text helpers shared by the hand-written JSON writers.
public enum JSONText {
    /// Appends `s` as a JSON string literal (quotes and escapes included).
    public static func appendString(_ s: String, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: Array("\\u00".utf8))
                bytes.append(hex[Int(byte >> 4)])
                bytes.append(hex[Int(byte & 0xF)])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
