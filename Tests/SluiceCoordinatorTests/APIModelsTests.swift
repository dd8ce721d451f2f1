import Foundation
@testable import SluiceCoordinator
import SluiceWorkflow
import Testing
import SluiceAPI

@Suite("API bodies")
struct APIModelsTests {
    @Test("a run survives the API's encoding and decoding, times to the millisecond")
    func runRoundTrip() throws {
        var step = StepState()
        step.status = .failed
        step.attempts = 3
        step.error = "card declined"
        var run = RunState(runID: "r-1", workflow: "w", version: 2, input: ["a": 1], steps: ["charge": step],
                           createdAt: Date(timeIntervalSince1970: 1_800_000_000.125))
        run.status = .failed
        run.failedStep = "charge"
        let bytes = try APICoding.encoder().encode(run)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains("\"createdAt\":\"2027-01-15T08:00:00.125Z\""), "\(text)")
        let back = try APICoding.decoder().decode(RunState.self, from: bytes)
        #expect(back == run)
    }

    @Test("errors decode from the body every failed request carries; plain ISO 8601 times are read too")
    func errorsAndDates() throws {
        let body = try JSONDecoder().decode(APIErrorBody.self, from: Data(#"{"error":{"code":"not_found","message":"no run x"}}"#.utf8))
        #expect(body.error.code == "not_found")
        let page = try APICoding.decoder().decode(DefinitionPage.self, from: Data(
            #"{"workflows":[{"name":"w","version":1,"createdAt":"2026-12-02T10:00:00Z","bytes":12}]}"#.utf8))
        #expect(page.workflows.first?.createdAt == Date(timeIntervalSince1970: 1_796_205_600))
        #expect(page.nextCursor == nil)
    }
}
