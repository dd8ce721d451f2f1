import Foundation
import SluiceCore
import SluiceWorkflow
import Testing

@Suite("RunState.storedJSON: the hand-written store form reads back as the same state")
struct StoredJSONTests {
    private func sample() -> RunState {
        var run = RunState(runID: "run-\"1\"\n", workflow: "orders", version: 3, input: ["items": [1, 2.5, "x"], "n": .null],
                           steps: [:], createdAt: Date(timeIntervalSince1970: 1_733_155_200.123_456),
                           parent: .init(runID: "parent", childKey: "parent/sub/0"), traceparent: "00-abc-def-01")
        run.status = .running
        run.startedAt = Date(timeIntervalSince1970: 1_733_155_201.5)
        var task = StepState()
        task.status = .succeeded
        task.attempts = 2
        task.generation = 1
        task.output = ["ok": true, "text": "tab\there \u{1}"]
        task.startedAt = Date(timeIntervalSince1970: 1_733_155_202.000_9)
        task.finishedAt = Date(timeIntervalSince1970: 1_733_155_203)
        var map = StepState()
        map.status = .running
        var done = ElementState()
        done.status = .succeeded
        done.attempts = 1
        done.output = 42
        var failed = ElementState()
        failed.status = .failed
        failed.error = "boom"
        map.elements = [done, failed, ElementState()]
        run.steps = ["a": task, "each": map, "later": StepState()]
        run.error = "none"
        run.failedStep = "b"
        run.output = ["x": [1, 2]]
        run.finishedAt = Date(timeIntervalSince1970: 1_733_155_299.999)
        _ = run.recordMessage("m-1")
        _ = run.recordMessage("m-\"2\"")
        return run
    }

    @Test("a run remembers the last message ids it applied, and refuses one seen")
    func appliedMessages() {
        var run = sample()
        let again = run.recordMessage("m-1")
        #expect(!again)
        var recorded = 0
        for i in 0..<RunState.appliedMessagesKept where run.recordMessage("n-\(i)") { recorded += 1 }
        #expect(recorded == RunState.appliedMessagesKept)
        #expect(run.appliedMessages?.count == RunState.appliedMessagesKept)
        #expect(run.appliedMessages?.first == "n-0")
        let forgotten = run.recordMessage("m-1")  // only the last ones are kept
        #expect(forgotten)
    }

    private func decode(_ bytes: [UInt8]) throws -> RunState {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        return try decoder.decode(RunState.self, from: Data(bytes))
    }

    @Test("every field survives, times to the same double")
    func roundTrip() throws {
        let run = sample()
        #expect(try decode(run.storedJSON()) == run)
        var bare = RunState(runID: "r", workflow: "w", version: 1, input: .null, steps: ["s": StepState()], createdAt: Date(timeIntervalSince1970: 0))
        bare.status = .pending
        #expect(try decode(bare.storedJSON()) == bare)
    }

    @Test("the same JSON as the Codable form that earlier versions stored")
    func sameAsFoundation() throws {
        let run = sample()
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .millisecondsSince1970
        let foundation = try JSONValue.parse(Array(try encoder.encode(run)))
        #expect(try JSONValue.parse(run.storedJSON()) == foundation)
    }

    @Test("a step task's stored form reads back as the same task, with and without its optional fields")
    func stepTask() throws {
        let full = StepTask(taskID: "r/each/0/3", name: "t\"x", queue: "q", arguments: ["i": 3, "s": "a\nb"], maxAttempts: 4,
                            retry: RetryPolicy(), runID: "r", stepID: "each", index: 3, traceparent: "00-1-2-01")
        let bare = StepTask(taskID: "r/a/0", name: "t", queue: nil, arguments: [:], maxAttempts: nil, retry: nil,
                            runID: "r", stepID: "a", index: nil)
        for task in [full, bare] {
            #expect(try JSONDecoder().decode(StepTask.self, from: Data(try task.storedJSON())) == task)
            #expect(try JSONValue.parse(try task.storedJSON()) == JSONValue.parse(Array(try JSONEncoder().encode(task))))
        }
    }
}
