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
    private let cache = Mutex<[String: [String: Handles]]>([:])

    init(factory: (any MetricsFactory)?, make: @escaping @Sendable (_ key: (task: String, queue: String), _ factory: any MetricsFactory) -> Handles) {
        explicitFactory = factory
        self.make = make
    }

    /// The handles for a task name (may be empty) and queue.
    func handles(task: String, queue: String) -> Handles {
        cache.withLock { cache in
            if let h = cache[queue]?[task] { return h }
            let h = make((task, queue), explicitFactory ?? MetricsSystem.factory)
            cache[queue, default: [:]][task] = h
            return h
        }
    }
}
