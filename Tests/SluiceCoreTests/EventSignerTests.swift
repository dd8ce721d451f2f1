import SluiceCore
import Testing

@Suite("Event signatures")
struct EventSignerTests {
    @Test("signatures cover the outcome: changing the result, the reason or the step breaks them")
    func signatureCoverage() throws {
        let signer = try EventSigner(key: Array("0123456789abcdef0123456789abcdef".utf8))
        let task = TaskEnvelope(id: "r/s/0", name: "n", queue: "q", arguments: [], workflowRunID: "r", workflowStep: "s")
        var ok = TaskEvent(kind: .succeeded, task: task)
        ok.result = #"{"a":1}"#
        let signed = signer.signed(ok)
        #expect(signer.verify(signed))
        var changed = signed
        changed.result = #"{"a":2}"#
        #expect(!signer.verify(changed))
        changed = signed
        changed.workflowStep = "other"
        #expect(!signer.verify(changed))
        changed = signed
        changed.kind = .dead
        #expect(!signer.verify(changed))
        #expect(throws: SluiceError.self) { _ = try EventSigner(key: Array("short".utf8)) }
    }
}
