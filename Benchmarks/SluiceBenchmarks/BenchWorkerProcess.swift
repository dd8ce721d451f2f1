/// A `sluice worker` process a benchmark started (through its caller):
/// stop it gracefully (SIGTERM, then wait), or kill it (SIGKILL).
public struct BenchWorkerProcess: Sendable {
    public var pid: Int32
    public var stop: @Sendable () async -> Void
    public var kill: @Sendable () async -> Void

    public init(pid: Int32, stop: @escaping @Sendable () async -> Void, kill: @escaping @Sendable () async -> Void) {
        self.pid = pid
        self.stop = stop
        self.kill = kill
    }
}
