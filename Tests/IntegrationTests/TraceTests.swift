import Foundation
import SluiceAPI
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

    @Test("with --otel-endpoint, one trace reaches an OTLP/HTTP receiver: sluice enqueue, the worker's span, the coordinator's run start, every step's span; the dashboard shows the run's trace id")
    func exportedTrace() async throws {
        let receiver = try OTLPReceiver()
        defer { receiver.stop() }
        let h = try await TaskHarness.make()
        // JSON, so the receiver needs no protobuf; spans sent within 0.1 s.
        let environment = ["OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_BSP_SCHEDULE_DELAY": "100"]
        let tracing = ["--otel-endpoint", receiver.endpoint]
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: store, extra: tracing + ["--trace-url", "http://traces.example/trace/{traceId}"],
                                                       environment: environment)
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        // The kick task starts the workflow with its own span as the parent, as a service would.
        let script = """
        if [ "$SLUICE_TASK_NAME" = trace.kick ]; then
          \(SluiceBinary.url.path) workflow start exported --api \(coordinator.api) --traceparent "$SLUICE_TRACEPARENT" >/dev/null || exit 1
        fi
        echo '{}'
        """
        let worker = try SluiceBinary.start(CoordinatorProcessTests.workerArguments(h) + ["--exec", script] + tracing,
                                            environment: environment)
        defer { SluiceBinary.stopIfRunning(worker) }
        try await coordinator.waitUntilHealthy()
        _ = try await coordinator.client.registerWorkflow(yaml: """
            name: exported
            queue: wf
            steps:
              - id: a
                task: trace.step
              - id: b
                after: [a]
                task: trace.step
            """)
        let enqueue = try SluiceBinary.start(["enqueue", "trace.kick", "--queue", "wf", "--url", h.url, "--prefix", h.topology.prefix] + tracing,
                                             environment: environment)
        #expect(try await SluiceBinary.exitStatus(of: enqueue) == 0, "sluice enqueue: \(SluiceBinary.logTail(of: enqueue))")

        // Every span of the chain, in one trace.
        let spans = try await eventually(60, "the spans of enqueue, kick, run start and both steps (got: \(receiver.spans.map(\.name)))") {
            () -> [OTLPReceiver.Span]? in
            let spans = receiver.spans
            let names = Set(spans.map(\.name))
            let all = names.isSuperset(of: ["enqueue trace.kick", "trace.kick", "start workflow exported"])
            return all && spans.filter { $0.name == "trace.step" }.count >= 2 ? spans : nil
        }
        let enqueued = try #require(spans.first { $0.name == "enqueue trace.kick" }, "the enqueue span: \(spans.map(\.name))")
        #expect(enqueued.service == "sluice-enqueue")
        let kick = try #require(spans.first { $0.name == "trace.kick" })
        #expect(kick.service == "sluice-worker")
        #expect(kick.parentSpanID == enqueued.spanID, "the worker's span is the enqueue span's child")
        let start = try #require(spans.first { $0.name == "start workflow exported" })
        #expect(start.service == "sluice-coordinator")
        #expect(start.parentSpanID == kick.spanID, "the run starts under the task that started it")
        let steps = spans.filter { $0.name == "trace.step" }
        #expect(Set(steps.compactMap { $0.attributes["sluice.workflow.step"] }) == ["a", "b"])
        for span in [kick, start] + steps {
            #expect(span.traceID == enqueued.traceID, "\(span.name) is in the same trace")
        }

        // The run keeps that trace, and its dashboard page names it.
        let runID = try #require(steps.first?.attributes["sluice.workflow.run"])
        let run = try await coordinator.client.run(runID)
        #expect(run.traceparent.flatMap(TraceParent.init)?.traceID == enqueued.traceID)
        let (status, page) = try await httpGet(coordinator.api + "/ui/runs/\(runID)")
        #expect(status == 200 && page.contains(enqueued.traceID), "the run page shows trace \(enqueued.traceID)")
        #expect(page.components(separatedBy: "href=\"http://traces.example/trace/\(enqueued.traceID)\"").count == 4,
                "the run and both steps link to the trace viewer")
    }
}
