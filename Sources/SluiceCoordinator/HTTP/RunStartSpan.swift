import SluiceCore
import Tracing

/// A span for a run's start, when the process has a tracer (OTLP export):
/// a child of the caller's trace context, and the parent of the run's step
/// tasks (the run keeps the span's context as its `traceparent`). Without
/// a tracer the caller's context is kept as it is, as before.
enum RunStartSpan {
    static func around<T: Sendable>(workflow: String, traceparent: String?,
                                    _ start: @Sendable (String?) async throws -> (T, String)) async throws -> T {
        if InstrumentationSystem.tracer is NoOpTracer { return try await start(traceparent).0 }
        var parent = ServiceContext.current ?? .topLevel
        if let traceparent {
            InstrumentationSystem.instrument.extract(["traceparent": traceparent], into: &parent, using: Headers())
        }
        return try await withSpan("start workflow \(workflow)", context: parent, ofKind: .server) { span in
            span.attributes["sluice.workflow"] = workflow
            var headers: [String: String] = [:]
            InstrumentationSystem.instrument.inject(span.context, into: &headers, using: Headers())
            let own = headers["traceparent"].flatMap(TraceParent.init)?.description ?? traceparent
            let (value, runID) = try await start(own)
            span.attributes["sluice.workflow.run"] = runID
            return value
        }
    }

    private struct Headers: Injector, Extractor {
        func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
        func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
    }
}
