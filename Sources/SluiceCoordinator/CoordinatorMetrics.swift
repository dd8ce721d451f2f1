import Foundation
public import Logging
public import Metrics
public import ServiceLifecycle
import SluiceWorkflow

/// The coordinator's gauges, sampled from its store every 5 s and on each
/// API scrape: runs by status (`sluice_workflow_runs`), unsent outbox rows and the age of the oldest
/// (`sluice_coordinator_outbox_unsent`, `sluice_coordinator_outbox_lag_seconds`),
/// and whether this coordinator holds the lease (`sluice_coordinator_active`).
/// `sluice_workflow_transitions_total` is counted as events are applied, and
/// each of the engine's commits timed, failed ones too (`sluice_coordinator_commit_seconds`).
public struct CoordinatorMetrics: Service {
    public let coordinator: Coordinator
    public let interval: Duration
    private let logger: Logger

    public init(coordinator: Coordinator, interval: Duration = .seconds(5), logger: Logger = Logger(label: "sluice.coordinator.metrics")) {
        self.coordinator = coordinator
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        // Ends at once on graceful shutdown, so that the coordinator's own
        // shutdown (and its lease release) is not held up by a sleep here.
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    do { try await Self.sample(coordinator) } catch is CancellationError { return } catch {
                        logger.debug("could not sample coordinator metrics", metadata: ["error": "\(error)"])
                    }
                    try await Task.sleep(for: interval)
                }
            }
        } catch is CancellationError {
            // Shutdown: a normal end, not a failure of the service group.
        }
    }

    /// Reads the store's counts once (aggregate queries) and records the gauges.
    public static func sample(_ coordinator: Coordinator, factory: (any MetricsFactory)? = nil) async throws {
        let factory = factory ?? MetricsSystem.factory
        let stats = try await coordinator.engine.store.statistics()
        for status in RunState.Status.allCases {
            Gauge(label: "sluice_workflow_runs", dimensions: [("status", status.rawValue)], factory: factory)
                .record(stats.runsByStatus[status.rawValue] ?? 0)
        }
        Gauge(label: "sluice_coordinator_outbox_unsent", factory: factory).record(stats.unsentOutbox)
        let lag = stats.oldestUnsent.map { max(0, Date().timeIntervalSince($0)) } ?? 0
        Gauge(label: "sluice_coordinator_outbox_lag_seconds", factory: factory).record(lag)
        Gauge(label: "sluice_coordinator_active", factory: factory).record(coordinator.isActive ? 1 : 0)
    }
}
