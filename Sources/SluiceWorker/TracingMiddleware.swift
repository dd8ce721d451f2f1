import SluiceCore
import Tracing

/// Runs each handler in a span of the process's swift-distributed-tracing
/// tracer (swift-otel, for example, bootstrapped by the application), as a
/// child of the trace the task carries in its `traceparent` header. Without
/// a bootstrapped tracer it costs nothing: a worker created before any
/// tracer is bootstrapped leaves it out (``isActive``), so bootstrap the
/// tracer first. The trace context still flows either way (the worker sets
/// ``TraceParent/current`` for the handler).
public struct TracingMiddleware: WorkerMiddleware {
    public init() {}

    /// Only with a tracer bootstrapped.
    public var isActive: Bool { TraceParent.isTracing }

    public func handle(_ context: TaskContext, next: @escaping @Sendable (TaskContext) async throws -> [UInt8]?) async throws -> [UInt8]? {
        // No tracer bootstrapped: no span to make (the trace context still flows).
        if !TraceParent.isTracing { return try await next(context) }
        return try await withSpan(context.name, context: TraceParent.context(continuing: context.traceparent), ofKind: .consumer) { span in
            span.attributes["sluice.task.id"] = context.id
            span.attributes["sluice.task.queue"] = context.task.queue
            span.attributes["sluice.task.attempt"] = context.attempt
            if let run = context.task.workflowRunID { span.attributes["sluice.workflow.run"] = run }
            if let step = context.task.workflowStep { span.attributes["sluice.workflow.step"] = step }
            // With a real tracer, tasks the handler enqueues name this span as their parent.
            guard let own = TraceParent(context: span.context) else { return try await next(context) }
            return try await TraceParent.$current.withValue(own) { try await next(context) }
        }
    }
}
