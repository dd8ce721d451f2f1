import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SluiceWire

/// Signs and checks task outcomes with a key that workers and coordinators
/// share (HMAC-SHA256), so that only a worker can decide a workflow step:
/// anyone who can publish to the broker can write an event, but not one that
/// verifies.
///
/// What is signed is everything the coordinator acts on: the kind, the task
/// id, the attempt, the run and step, the result of a success and the reason
/// of a dead task. The key comes from `SLUICE_EVENT_KEY` or a file
/// (`--event-key-file`); see docs/operations.md.
public struct EventSigner: Sendable {
    private let key: SymmetricKey

    /// Keys shorter than this are refused: 16 bytes of randomness or more.
    public static let minimumKeyBytes = 16

    /// A signer with `key` (its bytes, e.g. the text of a key file).
    public init(key: [UInt8]) throws {
        guard key.count >= Self.minimumKeyBytes else {
            throw SluiceError(.invalidArgument, "the event key must have at least \(Self.minimumKeyBytes) bytes (for example: openssl rand -hex 32)")
        }
        self.key = SymmetricKey(data: key)
    }

    /// The signature of `event`, as hex.
    public func signature(of event: TaskEvent) -> String {
        hex(HMAC<SHA256>.authenticationCode(for: Self.signedBytes(event), using: key))
    }

    /// `event` with its signature set.
    public func signed(_ event: TaskEvent) -> TaskEvent {
        var e = event
        e.signature = signature(of: event)
        return e
    }

    /// Whether `event` carries a valid signature (compared in constant time).
    public func verify(_ event: TaskEvent) -> Bool {
        guard let text = event.signature, text.utf8.count == 64, let given = Hex.decode(text) else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(given, authenticating: Self.signedBytes(event), using: key)
    }

    /// The signature the coordinator puts on a step task it publishes
    /// (header `sluice-step-signature`): over the task id, run and step, so
    /// that a worker holding the key can tell a real step from a task that
    /// someone enqueued in a step's name.
    public func stepSignature(taskID: String, runID: String, step: String?) -> String {
        hex(HMAC<SHA256>.authenticationCode(for: Self.stepBytes(taskID: taskID, runID: runID, step: step), using: key))
    }

    /// The signature of a message from one coordinator to another (a run
    /// message: its body), as hex. A domain word keeps it from ever equalling
    /// an event's or a step's signature.
    public func messageSignature(of body: [UInt8]) -> String {
        hex(HMAC<SHA256>.authenticationCode(for: Array("sluice-run-message\u{0}".utf8) + body, using: key))
    }

    /// Whether `signature` is `body`'s message signature.
    public func verifyMessage(_ body: [UInt8], signature: String?) -> Bool {
        guard let text = signature, text.utf8.count == 64, let given = Hex.decode(text) else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(given, authenticating: Array("sluice-run-message\u{0}".utf8) + body, using: key)
    }

    /// Whether `task` is a step task the coordinator signed.
    public func verifyStep(_ task: TaskEnvelope) -> Bool {
        guard let runID = task.workflowRunID, let text = task.stepSignature,
              text.utf8.count == 64, let given = Hex.decode(text) else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(given, authenticating: Self.stepBytes(taskID: task.id, runID: runID, step: task.workflowStep),
                                                      using: key)
    }

    static func stepBytes(taskID: String, runID: String, step: String?) -> [UInt8] {
        var out = Array("sluice-step-v1".utf8)
        for field in [taskID, runID, step] { appendField(field, to: &out) }
        return out
    }

    /// A field, length-prefixed (0xFF for none), so that no two field lists share an encoding.
    private static func appendField(_ text: String?, to out: inout [UInt8]) {
        guard let text else { out.append(0xFF); return }
        withUnsafeBytes(of: UInt32(text.utf8.count).bigEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: text.utf8)
    }

    private func hex<M: MessageAuthenticationCode>(_ mac: M) -> String { mac.withUnsafeBytes { Hex.encode($0) } }

    /// The fields a signature covers, each length-prefixed so that no two
    /// events share an encoding.
    static func signedBytes(_ event: TaskEvent) -> [UInt8] {
        var out = Array("sluice-event-v1".utf8)
        for field in [event.kind.rawValue, event.taskID, String(event.attempt), event.workflowRunID, event.workflowStep,
                      event.kind == .succeeded ? event.result : nil, event.kind == .dead ? event.deadReason?.rawValue : nil]
            // A progress report's fraction and message (a field only for that kind: the others' bytes are unchanged).
            + (event.kind == .progress ? [event.progress.map { String($0) }, event.progressMessage] : []) {
            appendField(field, to: &out)
        }
        return out
    }
}

extension TaskEnvelope {
    /// The coordinator's signature on a step task (header `sluice-step-signature`).
    public var stepSignature: String? {
        get { otherHeaders[WireHeader.stepSignature]?.stringValue }
        set { otherHeaders[WireHeader.stepSignature] = newValue.map { .string($0) } }
    }
}
