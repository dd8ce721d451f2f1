public import Tracing

/// Between a W3C `traceparent` and the process's tracer (swift-distributed-tracing):
/// what a span continues, and what a span hands on in a message header.
extension TraceParent {
    /// The current context with `traceparent` (if any) as the remote parent:
    /// the context a span that continues it starts from.
    public static func context(continuing traceparent: String?) -> ServiceContext {
        var context = ServiceContext.current ?? .topLevel
        if let traceparent {
            InstrumentationSystem.instrument.extract(["traceparent": traceparent], into: &context, using: Carrier())
        }
        return context
    }

    /// A span's context as it travels in a header; nil when the instrument puts none there.
    public init?(context: ServiceContext) {
        var headers: [String: String] = [:]
        InstrumentationSystem.instrument.inject(context, into: &headers, using: Carrier())
        guard let value = headers["traceparent"] else { return nil }
        self.init(value)
    }

    /// Whether a tracer is bootstrapped (spans cost nothing otherwise, and none are made).
    public static var isTracing: Bool { !(InstrumentationSystem.tracer is NoOpTracer) }

    private struct Carrier: Injector, Extractor {
        func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
        func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
    }
}
