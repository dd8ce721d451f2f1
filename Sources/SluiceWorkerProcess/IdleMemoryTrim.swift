#if canImport(Glibc)
import Glibc
#endif
public import ServiceLifecycle
public import SluiceWorker

/// Hands the heap a worker freed back to the system once the worker is idle.
///
/// glibc's allocator keeps freed memory for reuse. A worker that had just
/// drained 50,000 tasks at concurrency 300 held 39 MB of anonymous memory,
/// and `malloc_trim(0)` gave 33 MB of it back (docs/performance.md). So every
/// few seconds, if the worker has finished tasks since the last look and
/// runs none now, it trims. A trim walks the free lists: cheap next to a
/// burst of tasks, and never done while tasks run.
public struct IdleMemoryTrim: Service {
    public let worker: Worker
    public var interval: Duration = .seconds(5)

    public init(worker: Worker, interval: Duration = .seconds(5)) {
        self.worker = worker
        self.interval = interval
    }

    /// glibc's `malloc_trim`, looked up at run time: Swift's Glibc module does not declare it.
    private static let trim: (@convention(c) (Int) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
    }()

    public func run() async throws {
        guard let trim = Self.trim else {
            // No malloc_trim (not glibc): nothing to do, but returning would end the worker's service group.
            try? await gracefulShutdown()
            return
        }
        let worker = self.worker, interval = self.interval
        do {
            try await cancelWhenGracefulShutdown {
                var trimmedAt = worker.stats.processed
                while true {
                    try await Task.sleep(for: interval)
                    let stats = worker.stats
                    if stats.inFlight == 0 && stats.processed != trimmedAt {
                        _ = trim(0)
                        trimmedAt = stats.processed
                    }
                }
            }
        } catch is CancellationError {
            return
        }
    }
}
