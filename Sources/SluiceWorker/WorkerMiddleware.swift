#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
public import Metrics
import SluiceCore

/// Code around every handler call: logging, metrics, time limits, tracing.
///
/// `next` runs the rest of the chain and the handler; a middleware may change
/// the context, the result, or the error.
public protocol WorkerMiddleware: Sendable {
    func handle(_ context: TaskContext, next: @escaping @Sendable (TaskContext) async throws -> [UInt8]?) async throws -> [UInt8]?

    /// Whether this middleware has anything to do in this process. A worker
    /// asks once, when it is created, and leaves an inactive one out of its
    /// chains: even a layer that only calls `next` costs every task an
    /// async call. Default: true.
    var isActive: Bool { get }
}

extension WorkerMiddleware {
    public var isActive: Bool { true }
}

/// Logs each task's start and end.
public struct LoggingMiddleware: WorkerMiddleware {
    public init() {}
    public func handle(_ context: TaskContext, next: @escaping @Sendable (TaskContext) async throws -> [UInt8]?) async throws -> [UInt8]? {
        // Building the task's logger (its metadata) costs more than a no-op task.
        guard context.logsAtDebug else {
            do { return try await next(context) } catch {
                context.logger.info("task failed", metadata: ["error": "\(error)"])
                throw error
            }
        }
        context.logger.debug("task started")
        do {
            let result = try await next(context)
            context.logger.debug("task succeeded")
            return result
        } catch {
            context.logger.info("task failed", metadata: ["error": "\(error)"])
            throw error
        }
    }
}

/// Counts handler runs by result and times them, per task name and queue
/// (swift-metrics: `sluice_task_runs_total{outcome=succeeded|failed}`,
/// `sluice_task_duration_seconds`). What became of each delivery (succeeded,
/// retried, dead) the worker counts itself as `sluice_tasks_total`.
public struct MetricsMiddleware: WorkerMiddleware {
    private struct Handles: Sendable {
        let succeeded: Counter, failed: Counter, duration: Metrics.Timer
    }

    private let metrics: MetricCache<Handles>

    /// `factory`: where the metrics go; nil for the process's `MetricsSystem`.
    public init(factory: (any MetricsFactory)? = nil) {
        metrics = MetricCache(factory: factory) { key, factory in
            let d = [("task", key.task), ("queue", key.queue)]
            return Handles(succeeded: Counter(label: "sluice_task_runs_total", dimensions: d + [("outcome", "succeeded")], factory: factory),
                           failed: Counter(label: "sluice_task_runs_total", dimensions: d + [("outcome", "failed")], factory: factory),
                           duration: Metrics.Timer(label: "sluice_task_duration_seconds", dimensions: d, factory: factory))
        }
    }

    public func handle(_ context: TaskContext, next: @escaping @Sendable (TaskContext) async throws -> [UInt8]?) async throws -> [UInt8]? {
        let m = metrics.handles(task: context.name, queue: context.task.queue)
        let start = ContinuousClock.now
        do {
            let result = try await next(context)
            m.succeeded.increment()
            m.duration.recordInterval(since: start)
            return result
        } catch {
            m.failed.increment()
            m.duration.recordInterval(since: start)
            throw error
        }
    }
}

extension Metrics.Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        let (s, atto) = (ContinuousClock.now - start).components
        recordNanoseconds(s * 1_000_000_000 + atto / 1_000_000_000)
    }
}

/// The soft time limit: cancels the handler when its time is up. A handler
/// that ignores cancellation is reported after `grace` and waited for (its
/// slot is not reused until it ends); the attempt fails as `time_limit`.
public struct TimeLimitMiddleware: WorkerMiddleware {
    public var limit: Duration
    public var grace: Duration

    public init(limit: Duration, grace: Duration = .seconds(5)) {
        self.limit = limit
        self.grace = grace
    }

    public func handle(_ context: TaskContext, next: @escaping @Sendable (TaskContext) async throws -> [UInt8]?) async throws -> [UInt8]? {
        let limit = self.limit, grace = self.grace
        return try await withThrowingTaskGroup(of: Outcome.self) { group in
            group.addTask { .finished(try await next(context)) }
            group.addTask {
                try await Task.sleep(for: limit)
                return .timedOut
            }
            let first = try await group.next()!
            switch first {
            case .finished(let result):
                group.cancelAll()
                return result
            case .timedOut:
                group.cancelAll()  // cancels the handler
                let warn = Task {
                    try await Task.sleep(for: grace)
                    context.logger.warning("handler ignores cancellation past its time limit; its slot stays busy until it returns",
                                           metadata: ["limit": "\(limit)"])
                }
                _ = try? await group.next()  // wait for the handler to end, however long
                warn.cancel()
                throw TaskFailure(kind: "time_limit", "the task exceeded its time limit of \(limit)")
            }
        }
    }

    private enum Outcome: Sendable {
        case finished([UInt8]?)
        case timedOut
    }
}
