import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SluiceAMQP
import SluiceClient
import SluiceCore
import SluiceLocalBroker
import SluiceRabbitMQ
import SluiceSpawn
import SluiceTesting
import Synchronization
import Testing

/// A producer that enqueues tasks with confirms at a steady pace until
/// stopped, as a service would: a task whose publish fails (a node died
/// before its confirm) is sent again with the same id, so it may run twice
/// but is never dropped. Every id the broker confirmed is kept.
final class LoadProducer: Sendable {
    let broker: RabbitMQBroker
    private let state = Mutex<(confirmed: Set<String>, failures: Int, stopped: Bool, batches: Int, lastError: String?, kinds: [String: Int])>(
        ([], 0, false, 0, nil, [:]))
    private let loop = Mutex<Task<Void, Never>?>(nil)

    init(broker: RabbitMQBroker) { self.broker = broker }

    var confirmed: Set<String> { state.withLock { $0.confirmed } }
    /// Publishes that failed (each sent again until confirmed).
    var failures: Int { state.withLock { $0.failures } }

    /// Failed publishes by the AMQP error code in their message (`[publish_nacked]`, `[connection_lost]`...).
    var failureKinds: String {
        let kinds = state.withLock { $0.kinds }
        return kinds.isEmpty ? "none" : kinds.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
    }

    private static func kind(of message: String) -> String {
        // The first bracketed code, e.g. "... [publish_nacked] [enqueue_failed]".
        guard let open = message.firstIndex(of: "["), let close = message[open...].firstIndex(of: "]") else { return "other" }
        return String(message[message.index(after: open)..<close])
    }

    /// Counts for a failure message.
    var summary: String {
        state.withLock { "\($0.confirmed.count) confirmed, \($0.failures) failed, \($0.batches) batches answered, last error: \($0.lastError ?? "none")" }
    }

    /// Starts enqueuing `perTick` tasks named `name` on `queue` every `tick`.
    func start(name: String, queue: String, perTick: Int = 10, tick: Duration = .milliseconds(100)) {
        let client = TaskClient(broker: broker)
        let task = Task { [self] in
            var unconfirmed: [String] = []
            while !state.withLock({ $0.stopped }) {
                let ids = unconfirmed + (0..<max(0, perTick - unconfirmed.count)).map { _ in TaskEnvelope.newID() }
                let requests = ids.map { TaskClient.Request(name: name, arguments: Array("{}".utf8), options: .init(queue: queue, id: $0)) }
                do {
                    let results = try await client.enqueue(batch: requests)
                    unconfirmed = zip(ids, results).compactMap { id, result in (try? result.get()) == nil ? id : nil }
                    let confirmed = zip(ids, results).compactMap { id, result in (try? result.get()) == nil ? nil : id }
                    let errors = results.compactMap { result -> SluiceError? in
                        if case .failure(let error) = result { return error } else { return nil }
                    }
                    state.withLock {
                        $0.confirmed.formUnion(confirmed)
                        $0.failures += unconfirmed.count
                        $0.batches += 1
                        if let first = errors.first { $0.lastError = "\(first)" }
                        for error in errors { $0.kinds[Self.kind(of: "\(error)"), default: 0] += 1 }
                    }
                } catch {
                    unconfirmed = ids
                    state.withLock {
                        $0.failures += ids.count
                        $0.batches += 1
                        $0.lastError = "\(error)"
                        $0.kinds[Self.kind(of: "\(error)"), default: 0] += ids.count
                    }
                }
                // The pace of the load, not a wait for anything.
                try? await Task.sleep(for: tick)
            }
        }
        loop.withLock { $0 = task }
    }

    /// Stops enqueuing; returns once the last batch has its answer.
    func stop() async {
        state.withLock { $0.stopped = true }
        await loop.withLock { $0 }?.value
    }
}

/// The lines `--exec` appends for each task it runs: `ID WORKER`.
struct RunLog {
    let path: String

    init() {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-ran-\(UUID().uuidString).txt").path
        _ = FileManager.default.createFile(atPath: path, contents: nil)
    }

    /// A `--exec` script that records the task as run by `worker`.
    func script(worker: String) -> String { #"echo "$SLUICE_TASK_ID \#(worker)" >> '\#(path)'"# }

    /// Every line so far, as (id, worker).
    func entries() -> [(id: Substring, worker: Substring)] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ")
            return parts.count == 2 ? (parts[0], parts[1]) : nil
        }
    }

    func count(worker: String? = nil) -> Int {
        entries().filter { worker == nil || $0.worker == worker! }.count
    }

    /// Waits until the log holds `more` lines beyond `count(worker:)` now:
    /// work still gets done (by that worker, if named).
    func waitForProgress(_ what: String, worker: String? = nil, more: Int = 50, seconds: Double = 120,
                         processes: [ChildProcess] = []) async throws {
        let start = count(worker: worker)
        do {
            try await within(seconds, "\(more) more tasks to run \(what)" + (worker.map { " on \($0)" } ?? "")) {
                while count(worker: worker) < start + more {
                    for p in processes { if let exited = SluiceBinary.exited(p, "a worker") { throw exited } }
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
        } catch let timedOut as TimedOut {
            // What the workers logged is what explains a stall.
            let logs = processes.enumerated().map { "worker \($0.offset + 1):\n\(SluiceBinary.logTail(of: $0.element, lines: 40))" }
            throw ProgressStalled(description: "\(timedOut) (\(count(worker: worker) - start) ran)\n" + logs.joined(separator: "\n"))
        }
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    struct ProgressStalled: Error, CustomStringConvertible {
        var description: String
    }
}

/// Which node of `cluster` a process is connected to, by its
/// `sluice_broker_node` metric at `metricsURL` (nil before it connected).
func brokerNode(_ cluster: PrivateCluster, metricsURL: String) async -> Int? {
    guard let url = URL(string: metricsURL), let (data, _) = try? await URLSession.shared.data(from: url) else { return nil }
    for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasPrefix("sluice_broker_node{") {
        guard let value = line.split(separator: " ").last.flatMap({ Double($0) }), value == 1 else { continue }
        return [1, 2, 3].first { line.contains("127.0.0.1:\(cluster.amqpPort($0))\"") }
    }
    return nil
}

/// Waits until a process reports a node that `accept` takes; returns it.
func waitForNode(_ cluster: PrivateCluster, metricsURL: String, _ what: String, process: ChildProcess,
                 seconds: Double = 120, accept: @escaping @Sendable (Int) -> Bool = { _ in true }) async throws -> Int {
    do {
        return try await within(seconds, "\(what) to report a broker node") {
            while true {
                if let exited = SluiceBinary.exited(process, what) { throw exited }
                if let node = await brokerNode(cluster, metricsURL: metricsURL), accept(node) { return node }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    } catch let error as TimedOut {
        throw TimedOut(what: "\(error.what) (last: \(await brokerNode(cluster, metricsURL: metricsURL).map(String.init) ?? "none"); "
                           + "its log ends:\n\(SluiceBinary.logTail(of: process)))", seconds: error.seconds)
    }
}

/// Which node of `cluster` a connection is on.
func nodeNumber(_ cluster: PrivateCluster, _ connection: AMQPConnection) -> Int? {
    guard let port = connection.node?.port else { return nil }
    return [1, 2, 3].first { cluster.amqpPort($0) == port }
}

/// Waits until every quorum queue whose name starts with `prefix` has all
/// three members online again, as an operator waits before restarting the
/// next node.
func waitUntilFullyReplicated(_ cluster: PrivateCluster, prefix: String, through node: Int, seconds: Double = 120) async throws {
    try await within(seconds, "every quorum queue of \(prefix) to have three members online") {
        while true {
            if let listing = try? await cluster.ctl(node: node, "-q", "list_queues", "name", "type", "online", "--formatter", "json"),
               let rows = try? JSONSerialization.jsonObject(with: Data(listing.utf8)) as? [[String: Any]] {
                let ours = rows.filter { ($0["name"] as? String)?.hasPrefix(prefix + ".") == true && $0["type"] as? String == "quorum" }
                if !ours.isEmpty, ours.allSatisfy({ ($0["online"] as? [Any])?.count == 3 }) { return }
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }
}
