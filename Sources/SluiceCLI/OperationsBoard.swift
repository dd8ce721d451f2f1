import Foundation
import SluiceAPI
import SluiceCoordinator
import SluiceCore
import SluiceMonitor
import Synchronization

/// What the coordinator's queue sampler last saw, for `GET /v1/queues` and
/// `GET /v1/workers` (and so the dashboard): the latest ``QueueOverview``,
/// each queue's recent samples, and the worker roster of the heartbeats it
/// listens to. ``QueueGauges`` fills it; the API only reads.
final class OperationsBoard: Sendable {
    /// Samples kept per queue for the charts.
    static let historyLength = 60

    private struct State {
        var overview: QueueOverview?
        var history: [String: [QueueSample]] = [:]
        var events: EventWatch?
    }

    private let state = Mutex(State())
    /// How often the sampler runs: an overview older than three of these is stale.
    let interval: Duration

    init(interval: Duration) {
        self.interval = interval
    }

    func record(_ overview: QueueOverview) {
        state.withLock { s in
            s.overview = overview
            var names = Set<String>()
            for row in overview.queues where !row.missing {
                names.insert(row.queue)
                var samples = s.history[row.queue] ?? []
                samples.append(QueueSample(at: overview.at, ready: row.ready, publishRate: row.publishRate, deliverRate: row.deliverRate))
                if samples.count > Self.historyLength { samples.removeFirst(samples.count - Self.historyLength) }
                s.history[row.queue] = samples
            }
            // Queues gone from the prefix lose their history.
            for name in s.history.keys where !names.contains(name) { s.history[name] = nil }
        }
    }

    func listen(to events: EventWatch?) {
        state.withLock { $0.events = events }
    }

    /// The API's queue list; refused while nothing recent was sampled (a
    /// coordinator that leads nothing does not sample).
    func queues(now: Date = Date()) throws -> QueueList {
        let (overview, history) = state.withLock { ($0.overview, $0.history) }
        guard let overview, now.timeIntervalSince(overview.at) <= max(3 * interval.timeInterval, 5) else {
            throw APIError(.unavailable, "no recent queue sample: queues are sampled by a coordinator that leads (the active one, or one leading a partition); ask that one, or wait for its first sample")
        }
        let queues = overview.queues.map { row in
            QueueInfo(queue: row.queue, ready: row.ready, unacknowledged: row.unacknowledged, consumers: row.consumers, dead: row.dead,
                      publishRate: row.publishRate, deliverRate: row.deliverRate, ackRate: row.ackRate, oldestAgeSeconds: row.oldestAgeSeconds,
                      missing: row.missing, leader: row.leader, members: row.members, online: row.online, history: history[row.queue] ?? [])
        }
        return QueueList(at: overview.at, ratesAvailable: overview.ratesAvailable, ratesUnavailableReason: overview.ratesUnavailableReason,
                         delayed: overview.delayed, queues: queues)
    }

    func workers(now: Date = Date()) throws -> WorkerList {
        guard let events = state.withLock({ $0.events }) else {
            throw APIError(.unavailable, "this coordinator does not listen to worker heartbeats yet (it listens while it leads)")
        }
        let workers = events.workers(now: now).map {
            WorkerInfo(heartbeat: $0.heartbeat, status: $0.status, uptimeSeconds: $0.uptimeSeconds, silentSeconds: $0.silentSeconds)
        }
        return WorkerList(at: now, workers: workers)
    }

    /// The API's view of this board.
    var apiOperations: CoordinatorAPI.Configuration.Operations {
        CoordinatorAPI.Configuration.Operations(queues: { try self.queues() }, workers: { try self.workers() })
    }
}
