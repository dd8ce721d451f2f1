import Foundation
import SluiceClient
import SluiceCore
import SluiceSpawn
import SluiceTesting
import SluiceWorkflow
import Testing

@Suite("Trace context")
struct TraceTests {
    @Test("a trace id given at enqueue reaches every step task of the workflow that task started")
    func traceThroughWorkflow() async throws {
        let record = FileManager.default.temporaryDirectory.appendingPathComponent("trace-\(UUID().uuidString).txt").path
        defer { try? FileManager.default.removeItem(atPath: record) }
        let port = CoordinatorProcess.freePort()
        // Every task records its name, step and traceparent; the kickoff task
        // starts the workflow with the trace it was given, as a service would.
        let script = """
        printf '%s %s %s\\n' "$SLUICE_TASK_NAME" "${SLUICE_WORKFLOW_STEP:--}" "${SLUICE_TRACEPARENT:--}" >> \(record)
        if [ "$SLUICE_TASK_NAME" = trace.kickoff ]; then
          \(SluiceBinary.url.path) workflow start traced --api http://127.0.0.1:\(port) --input '{"items":[1,2,3]}' --traceparent "$SLUICE_TRACEPARENT" >/dev/null || exit 1
        fi
        echo '{}'
        """
        try await WorkflowHarness.with(port: port, workerArguments: ["--exec", script]) { h in
            try await h.engine.register(try WorkflowDefinition.decode(yaml: """
            name: traced
            version: 1
            queue: wf
            steps:
              - id: a
                task: trace.step
              - id: m
                after: [a]
                map: { over: input.items, task: trace.step }
              - id: b
                after: [m]
                task: trace.step
            """))
            let trace = TraceParent.random()
            let client = TaskClient(broker: h.tasks.broker)
            _ = try await client.enqueue(name: "trace.kickoff", json: Array("{}".utf8),
                                         options: .init(queue: WorkflowHarness.queue, traceparent: trace.description))
            let lines = try await eventually(60, "the 5 step tasks to run") { () -> [String]? in
                let text = (try? String(contentsOfFile: record, encoding: .utf8)) ?? ""
                let steps = text.split(separator: "\n").map(String.init).filter { $0.hasPrefix("trace.step ") }
                return steps.count >= 5 ? steps : nil
            }
            let kickoff = ((try? String(contentsOfFile: record, encoding: .utf8)) ?? "").split(separator: "\n").first { $0.hasPrefix("trace.kickoff ") }
            #expect(kickoff?.hasSuffix(trace.description) == true, "the kickoff task carries the trace as given")
            var spans: Set<String> = []
            var steps: Set<String> = []
            for line in lines {
                let parts = line.split(separator: " ").map(String.init)
                guard parts.count == 3, let parent = TraceParent(parts[2]) else { Issue.record("no trace context in: \(line)"); continue }
                #expect(parent.traceID == trace.traceID, "\(line)")
                #expect(parent.spanID != trace.spanID)
                spans.insert(parent.spanID)
                steps.insert(parts[1])
            }
            #expect(steps == ["a", "m[0]", "m[1]", "m[2]", "b"])
            #expect(spans.count == 5, "each step task is a span of its own")
        }
    }
}
