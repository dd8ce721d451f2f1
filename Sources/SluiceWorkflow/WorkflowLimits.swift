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
    /// The most elements of one map in flight at once (its `maxParallel`, if
    /// lower, wins): one run's map cannot fill the work queue ahead of every
    /// other run's steps.
    public var maxMapParallel: Int

    /// 1 MiB of arguments, 10,000 map elements, 1,000 of them in flight.
    public init(maxArgumentsBytes: Int = 1 << 20, maxMapElements: Int = 10_000, maxMapParallel: Int = 1_000) {
        self.maxArgumentsBytes = max(2, maxArgumentsBytes)
        self.maxMapElements = max(1, maxMapElements)
        self.maxMapParallel = max(1, maxMapParallel)
    }

    /// The defaults.
    public static let standard = WorkflowLimits()
}
