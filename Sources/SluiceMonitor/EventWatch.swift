public import Foundation
public import SluiceCore
import Synchronization

/// Listens to the events exchange for monitoring: worker heartbeats, and
/// task outcomes (for the recent enqueue-to-start wait and failures). It
/// reads through a temporary queue of its own, so it takes nothing from
/// anyone.
public final class EventWatch: Sendable {
    private struct State {
        var roster = WorkerRoster()
        /// Recent waits per queue, newest last (at most 200 each).
        var waits: [String: [Double]] = [:]
        var failures: [TaskEvent] = []
        /// Per queue, the newest task any worker heard from has received
        /// (kept after the worker is gone).
        var newestTaken: [String: Date] = [:]
        /// The latest progress report of each task that has not ended, by task id.
        var progress: [String: TaskEvent] = [:]
        var progressSwept = Date()

        /// Takes in a task event: a progress report, or an outcome (its wait; a failure).
        mutating func record(_ event: TaskEvent) {
            if event.kind == .progress {
                if event.at >= progress[event.taskID]?.at ?? .distantPast { progress[event.taskID] = event }
                if progress.count > 500, Date().timeIntervalSince(progressSwept) > 10 {
                    let cutoff = Date().addingTimeInterval(-60)
                    progress = progress.filter { $0.value.at > cutoff }
                    progressSwept = Date()
                }
                return
            }
            if event.kind == .succeeded || event.kind == .dead { progress[event.taskID] = nil }
            if let wait = event.waitMilliseconds {
                waits[event.queue, default: []].append(wait)
                if waits[event.queue]!.count > 200 { waits[event.queue]!.removeFirst(50) }
            }
            if event.kind != .succeeded {
                failures.append(event)
                if failures.count > 100 { failures.removeFirst(20) }
            }
        }
    }

    private final class Shared: Sendable {
        let mutex = Mutex(State())
        func withLock<T>(_ body: (inout State) -> T) -> T { mutex.withLock { body(&$0) } }
    }

    private let state = Shared()
    private let consumer: BrokerConsumer
    private let reader: Task<Void, Never>
    private let broker: any Broker

    /// Starts listening (`outcomes`: also task outcome events).
    public init(broker: any Broker, outcomes: Bool = true) async throws {
        let t = broker.topology
        var bindings = [t.workerHeartbeatRoutingKey]
        if outcomes {
            bindings += [TaskEvent.Kind.succeeded, .retrying, .dead, .progress].map { "#.\($0.rawValue)" }
        }
        let consumer = try await broker.subscribeEvents(bindings: bindings)
        self.consumer = consumer
        self.broker = broker
        let state = self.state
        let heartbeatKey = t.workerHeartbeatRoutingKey
        reader = Task {
            do {
                for try await delivery in consumer {
                    if delivery.routingKey == heartbeatKey {
                        if let beat = try? WorkerHeartbeat.decode(delivery.body) {
                            state.withLock { s in
                                s.roster.record(beat)
                                for (queue, date) in beat.newestTaken ?? [:] where date > s.newestTaken[queue, default: .distantPast] {
                                    s.newestTaken[queue] = date
                                }
                            }
                        }
                    } else {
                        // A pack of step outcomes counts as its events. (Packs of plain
                        // tasks' outcomes end in `~`: these `#.<kind>` bindings never get them.)
                        let events = Topology.isEventPackKey(delivery.routingKey)
                            ? (try? EventPack.decode(delivery.body)) ?? [] : [try? TaskEvent.decode(delivery.body)].compactMap { $0 }
                        if !events.isEmpty { state.withLock { s in for event in events { s.record(event) } } }
                    }
                }
            } catch {}
        }
    }

    /// Asks every worker for a heartbeat now.
    public func ping() async {
        _ = try? await broker.publish([broker.topology.pingMessage()])
    }

    /// Workers heard so far, with their status now.
    public func workers(now: Date = Date()) -> [WorkerRoster.Entry] {
        state.withLock { $0.roster.entries(now: now) }
    }

    /// Queues that workers heard from so far consume.
    public func workerQueues() -> [String] {
        Array(Set(workers().flatMap(\.heartbeat.queues))).sorted()
    }

    /// Per queue, the enqueue time of the newest task a worker has received
    /// (from heartbeats), for ``BacklogAges``.
    public func newestTaken() -> [String: Date] {
        state.withLock { $0.newestTaken }
    }

    /// The median of the recent enqueue-to-start waits, per queue (ms).
    public func recentWaits() -> [String: Double] {
        state.withLock { s in
            s.waits.compactMapValues { values in
                guard !values.isEmpty else { return nil }
                let recent = values.suffix(50).sorted()
                return recent[recent.count / 2]
            }
        }
    }

    /// Tasks running now that reported progress in the last `within`
    /// seconds, the most recently heard first.
    public func inProgress(limit: Int = 10, within: TimeInterval = 60, now: Date = Date()) -> [TaskEvent] {
        state.withLock { s in
            Array(s.progress.values.filter { now.timeIntervalSince($0.at) < within }.sorted { $0.at > $1.at }.prefix(limit))
        }
    }

    /// Recent retries and dead letters, newest first.
    public func recentFailures(limit: Int = 10) -> [TaskEvent] {
        state.withLock { Array($0.failures.suffix(limit).reversed()) }
    }

    /// Stops listening.
    public func stop() async {
        try? await consumer.cancel()
        reader.cancel()
    }
}
