/// How large a run may make its step tasks and maps: a run that goes past a
/// limit fails that step with a clear error instead of burdening the
/// coordinator, the outbox and every other run.
public struct WorkflowLimits: Sendable, Hashable {
    /// The most bytes a step task's rendered arguments (JSON) may take. The
    /// default is the worker's default body limit: a larger task would be
    /// dead-lettered as `too_large` by the worker anyway.
    public var maxArgumentsBytes: Int
    /// The most elements one map step may have.
    public var maxMapElements: Int

    /// 1 MiB of arguments, 10,000 map elements.
    public init(maxArgumentsBytes: Int = 1 << 20, maxMapElements: Int = 10_000) {
        self.maxArgumentsBytes = max(2, maxArgumentsBytes)
        self.maxMapElements = max(1, maxMapElements)
    }

    /// The defaults.
    public static let standard = WorkflowLimits()
}
