public import SluiceWorkflow

/// An event for a run in a partition this coordinator does not lead: kept
/// in the outbox with the commit that decided it, then published to the
/// run's partition queue (`~wf.<bucket>.~run`), where its leader applies it.
/// What crosses partitions this way: a child run's end for its parent, a
/// parent's cancel for a child, a dead letter, and commands sent to the API
/// of a coordinator that does not lead the run. Applying one twice changes
/// nothing, like every event.
public struct RunMessage: Sendable, Hashable, Codable {
    public var runID: String
    public var event: WorkflowEvent

    public init(runID: String, event: WorkflowEvent) {
        self.runID = runID
        self.event = event
    }

    /// How an outbox row's payload that holds a message starts (a task's
    /// payload starts with `{"taskID"`).
    static let payloadPrefix = "{\"message\":"

    /// The outbox payload: `{"message":<this message>}`.
    func payload() throws -> String {
        "\(Self.payloadPrefix)\(try StoreCoding.encode(self))}"
    }

    /// The message in an outbox payload, or nil if the payload holds a task.
    static func fromPayload(_ text: String) throws -> RunMessage? {
        guard text.hasPrefix(payloadPrefix) else { return nil }
        return try StoreCoding.decode(RunMessage.self, String(text.dropFirst(payloadPrefix.count).dropLast()))
    }

    /// The body published to the partition queue: the message as JSON.
    func body() throws -> [UInt8] { Array(try StoreCoding.encode(self).utf8) }

    static func decode(body: [UInt8]) throws -> RunMessage {
        try StoreCoding.decode(RunMessage.self, String(decoding: body, as: UTF8.self))
    }
}
