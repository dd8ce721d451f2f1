import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SluiceWorkflow

/// The coordinator's gauges, sampled from its store: runs by status
/// (`sluice_workflow_runs`), unsent outbox rows and the age of the oldest
/// (`sluice_coordinator_outbox_unsent`, `sluice_coordinator_outbox_lag_seconds`),
/// and whether this coordinator holds the lease (`sluice_coordinator_active`).
/// `sluice_workflow_transitions_total` is counted as events are applied.
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
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do { try await Self.sample(coordinator) } catch is CancellationError { return } catch {
                logger.debug("could not sample coordinator metrics", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// Reads the store once and records the gauges (counts capped at 10,000 per status).
    public static func sample(_ coordinator: Coordinator, factory: (any MetricsFactory)? = nil) async throws {
        let factory = factory ?? MetricsSystem.factory
        let store = coordinator.engine.store
        for status in RunState.Status.allCases {
            let count = try await store.runs(RunQuery(status: status, limit: 10_000)).runs.count
            Gauge(label: "sluice_workflow_runs", dimensions: [("status", status.rawValue)], factory: factory).record(count)
        }
        let unsent = try await store.unsentOutbox(limit: 10_000)
        Gauge(label: "sluice_coordinator_outbox_unsent", factory: factory).record(unsent.count)
        let lag = unsent.map { Date().timeIntervalSince($0.createdAt) }.max() ?? 0
        Gauge(label: "sluice_coordinator_outbox_lag_seconds", factory: factory).record(max(0, lag))
        Gauge(label: "sluice_coordinator_active", factory: factory).record(coordinator.isActive ? 1 : 0)
    }
}
