import Foundation
import SluiceClient
import SluiceCore
import SluiceMonitor
import SluiceRabbitMQ
import SluiceTesting
import SluiceWire
import SluiceWorkflow
import Testing

@Suite("Backlog age: how long the oldest ready task has waited")
struct BacklogAgeTests {
    /// A gauge's value for one queue in Prometheus text, if present.
    static func gauge(_ text: String, _ name: String, queue: String) -> Double? {
        let prefix = "\(name){queue=\"\(queue)\"} "
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else { return nil }
        return Double(line.dropFirst(prefix.count))
    }

    @Test("with no worker running the oldest age grows, in the coordinator's /metrics and sluice queues; a worker's last heartbeat bounds it afterwards")
    func growsWithoutWorkers() async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        let q = "aged"
        try await h.broker.prepare(queues: [q])
        let watch = try await EventWatch(broker: h.broker, outcomes: false)
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: store, extra: ["--queue-metrics-interval", "1s", "--default-queue", q])
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        let client = TaskClient(broker: h.broker)
        for i in 0..<2 { _ = try await client.enqueue(name: "echo", json: Array("{\"i\":\(i)}".utf8), options: .init(queue: q)) }

        @Sendable func metrics() async -> String? {
            guard let (status, text) = try? await httpGet(coordinator.api + "/metrics"), status == 200 else { return nil }
            return text
        }
        let first = try await eventually(60, "the coordinator to export 2 ready tasks in \(q) with an age") { () -> Double? in
            guard let text = await metrics(), Self.gauge(text, "sluice_queue_ready", queue: q) == 2 else { return nil }
            return Self.gauge(text, "sluice_queue_oldest_age_seconds", queue: q)
        }
        let later = try await eventually(60, "the exported age to grow from \(first) s by 2 s") { () -> Double? in
            guard let text = await metrics(), let age = Self.gauge(text, "sluice_queue_oldest_age_seconds", queue: q) else { return nil }
            return age >= first + 2 ? age : nil
        }
        #expect(later >= first + 2)

        let common = ["--url", h.url, "--prefix", h.topology.prefix]
        let (status, output) = try await SluiceBinary.run(["queues", "--json", "--queue", q, "--wait", "0s"] + common)
        #expect(status == 0, "\(output)")
        let row = try JSONValue.parse(Array(output.utf8))["queues"]?[0]
        #expect(row?["ready"] == .number(2), "\(output)")
        // A fresh command that heard no worker counts from its own first look: a lower bound.
        #expect(row?["oldestAgeBasis"] == .string("watching"), "\(output)")
        if case .number(let age)? = row?["oldestAgeSeconds"] { #expect(age >= 0) } else { Issue.record("no age: \(output)") }

        // A worker takes them; its beats carry the newest task's enqueue time, kept after it stops.
        let worker = h.startWorker(queues: [q], registry: .echo())
        try await h.waitForReady(q, count: 0, seconds: 60)
        _ = try await eventually(60, "the coordinator to export an age of 0 for the emptied queue") { () -> Bool? in
            guard let text = await metrics() else { return nil }
            return Self.gauge(text, "sluice_queue_ready", queue: q) == 0 && Self.gauge(text, "sluice_queue_oldest_age_seconds", queue: q) == 0
                ? true : nil
        }
        try await worker.stop()
        let taken = try await eventually(30, "a heartbeat with the newest task taken from \(q)") { () -> Date? in watch.newestTaken()[q] }
        #expect(abs(taken.timeIntervalSinceNow) < 300, "\(taken)")
        // The stopped worker's consumer gone at the broker too: the next
        // task must stay ready (a full run once saw it taken meanwhile).
        let workQueue = h.topology.workQueue(q)
        _ = try await eventually(60, "the stopped worker's consumer to leave \(q)") { () -> Bool? in
            try await h.broker.queueState(workQueue).consumerCount == 0 ? true : nil
        }
        _ = try await client.enqueue(name: "echo", json: Array("{}".utf8), options: .init(queue: q))
        try await h.waitForReady(q, count: 1, seconds: 60)
        let collector = QueueCollector(broker: h.broker, management: nil)
        let bounded = await collector.collect(only: [q], newestTaken: watch.newestTaken())
        #expect(bounded.queues.first?.oldestAgeBasis == .workers, "\(bounded.queues)")
        let bound = try #require(bounded.queues.first?.oldestAgeSeconds)
        #expect(bound >= 0 && bound < 300)
        await watch.stop()
    }
}
