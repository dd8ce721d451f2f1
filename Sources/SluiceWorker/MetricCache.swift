import Metrics
import Synchronization

/// Metric handles made once per key, then reused.
///
/// Creating a handle asks the metrics backend for it each time (with
/// swift-prometheus: a locked registry lookup and label formatting); per
/// task, that cost a quarter of a no-op task's end-to-end rate. The
/// middleware keeps one small struct of handles per queue and task name. The backend is resolved on first use, so a cache made before
/// `MetricsSystem.bootstrap` still reports to the bootstrapped one.
final class MetricCache<Handles: Sendable>: Sendable {
    private let explicitFactory: (any MetricsFactory)?
    private let make: @Sendable (_ key: (task: String, queue: String), _ factory: any MetricsFactory) -> Handles
    private struct State {
        var byQueue: [String: [String: Handles]] = [:]
        /// The last pair asked for: most workers run one task name from one
        /// queue, and comparing two strings costs less than hashing them.
        var last: (task: String, queue: String, handles: Handles)?
    }

    private let cache = Mutex(State())

    init(factory: (any MetricsFactory)?, make: @escaping @Sendable (_ key: (task: String, queue: String), _ factory: any MetricsFactory) -> Handles) {
        explicitFactory = factory
        self.make = make
    }

    /// The handles for a task name (may be empty) and queue.
    func handles(task: String, queue: String) -> Handles {
        cache.withLock { state in
            if let last = state.last, last.task == task, last.queue == queue { return last.handles }
            let h: Handles
            if let found = state.byQueue[queue]?[task] {
                h = found
            } else {
                h = make((task, queue), explicitFactory ?? MetricsSystem.factory)
                state.byQueue[queue, default: [:]][task] = h
            }
            state.last = (task, queue, h)
            return h
        }
    }
}
