import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SluiceCore
import SluiceMonitor

/// The coordinator's per-queue gauges, for Prometheus alerts and autoscalers
/// (KEDA): what `sluice queues` shows, sampled every `interval` by a
/// coordinator that leads (the active one, or one leading a partition).
///
/// `sluice_queue_ready`, `sluice_queue_oldest_age_seconds`,
/// `sluice_queue_unacknowledged` (management API only), `sluice_queue_consumers`
/// and `sluice_queue_dead`, each with a `queue` label (a level's name for
/// priority levels), and `sluice_queue_delayed` for the delay ladder. It
/// listens to worker heartbeats for the ages (see ``BacklogAges``) and, without
/// the management API, for which queues exist.
struct QueueGauges: Service {
    let broker: any Broker
    let management: ManagementClient?
    let interval: Duration
    /// Always sampled, even before a worker names it (without the management API).
    let defaultQueue: String
    /// Samples only while this is true (the coordinator leads): standbys
    /// would report the same numbers and only add load on the management API.
    let leads: @Sendable () -> Bool
    let logger: Logger
    /// Where the API reads the last sample and the worker roster.
    var board: OperationsBoard?

    func run() async throws {
        // Never ends on its own (the service group would stop the coordinator
        // with it): without a way to listen, it says so and tries again.
        let collector = QueueCollector(broker: broker, management: management)
        do {
            try await cancelWhenGracefulShutdown {
                var seen: Set<String> = []
                var warned = false
                var events: EventWatch?
                defer {
                    board?.listen(to: nil)
                    if let events { Task { await events.stop() } }
                }
                while !Task.isCancelled {
                    guard leads() else {
                        // A standby's roster would go stale: the API says it does not listen.
                        board?.listen(to: nil)
                        try await Task.sleep(for: interval)
                        continue
                    }
                    if events == nil {
                        do {
                            events = try await EventWatch(broker: broker, outcomes: false)
                            await events?.ping()
                            board?.listen(to: events)
                        } catch {
                            if !warned {
                                logger.warning("queue gauges cannot listen to worker heartbeats (a monitor queue needs the grant in docs/operations.md); trying again",
                                               metadata: ["error": "\(error)"])
                                warned = true
                            }
                            try await Task.sleep(for: .seconds(60))
                            continue
                        }
                    }
                    guard let events else { continue }
                    board?.listen(to: events)
                    // Queues seen before stay sampled when the management API does not answer.
                    let known = Array(seen.union(events.workerQueues()).union([defaultQueue])).sorted()
                    let overview = await collector.collect(known: known, newestTaken: events.newestTaken())
                    seen.formUnion(overview.queues.filter { !$0.missing }.map(\.queue))
                    Self.record(overview)
                    board?.record(overview)
                    try await Task.sleep(for: interval)
                }
            }
        } catch is CancellationError {
            // Shutdown: a normal end.
        }
    }

    static func record(_ overview: QueueOverview, factory: (any MetricsFactory)? = nil) {
        let factory = factory ?? MetricsSystem.factory
        func gauge(_ label: String, _ queue: String, _ value: (some BinaryInteger)?) {
            guard let value else { return }
            Gauge(label: label, dimensions: [("queue", queue)], factory: factory).record(value)
        }
        for row in overview.queues where !row.missing {
            gauge("sluice_queue_ready", row.queue, row.ready)
            gauge("sluice_queue_unacknowledged", row.queue, row.unacknowledged)
            gauge("sluice_queue_consumers", row.queue, row.consumers)
            gauge("sluice_queue_dead", row.queue, row.dead)
            if let age = row.oldestAgeSeconds {
                Gauge(label: "sluice_queue_oldest_age_seconds", dimensions: [("queue", row.queue)], factory: factory).record(age)
            }
        }
        if let delayed = overview.delayed { Gauge(label: "sluice_queue_delayed", factory: factory).record(delayed) }
    }
}
