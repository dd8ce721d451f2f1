public import SluiceWorkflow
import Foundation

/// An event for a run in a partition this coordinator does not lead: kept
/// in the outbox with the commit that decided it, then published to the
/// run's partition queue (`~wf.<bucket>.~run`), where its leader applies it.
/// What crosses partitions this way: a child run's end for its parent, a
/// parent's cancel for a child, a dead letter, and commands sent to the API
/// of a coordinator that does not lead the run.
///
/// A message can arrive twice (published by the sender and again by the
/// leader's relay, or redelivered after a crash). Events and a cancel change
/// nothing the second time; pause, resume and a step retry would (a replayed
/// pause after a resume, a second rerun), so those carry an `id` and the run
/// remembers the ids of the last ones it applied (``RunState/appliedMessages``).
public struct RunMessage: Sendable, Hashable, Codable {
    public var runID: String
    public var event: WorkflowEvent
    /// Set for commands that must apply once (see ``needsID(_:)``).
    public var id: String?

    /// A message for `runID`; commands that must apply once get a new id
    /// unless one is given (a message passed on keeps its id).
    public init(runID: String, event: WorkflowEvent, id: String? = nil) {
        self.runID = runID
        self.event = event
        self.id = id ?? (Self.needsID(event) ? UUID().uuidString : nil)
    }

    /// Whether applying `event` a second time could change the run.
    static func needsID(_ event: WorkflowEvent) -> Bool {
        switch event {
        case .pause, .resume, .retryStep: true
        // A signal carries its own id; the run remembers those (``RunState/signalIDs``).
        case .start, .taskSucceeded, .taskProgress, .taskRetrying, .taskDead, .timerFired, .childFinished, .cancel, .signal: false
        }
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
