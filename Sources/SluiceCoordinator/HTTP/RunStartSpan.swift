import SluiceCore
import Tracing

/// A span for a run's start, when the process has a tracer (OTLP export):
/// a child of the caller's trace context, and the parent of the run's step
/// tasks (the run keeps the span's context as its `traceparent`). Without
/// a tracer the caller's context is kept as it is, as before.
enum RunStartSpan {
    static func around<T: Sendable>(workflow: String, traceparent: String?,
                                    _ start: @Sendable (String?) async throws -> (T, String)) async throws -> T {
        if !TraceParent.isTracing { return try await start(traceparent).0 }
        return try await withSpan("start workflow \(workflow)", context: TraceParent.context(continuing: traceparent), ofKind: .server) { span in
            span.attributes["sluice.workflow"] = workflow
            let own = TraceParent(context: span.context)?.description ?? traceparent
            let (value, runID) = try await start(own)
            span.attributes["sluice.workflow.run"] = runID
            return value
        }
    }
}
