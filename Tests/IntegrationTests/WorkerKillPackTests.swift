import Foundation
import SluiceClient
import SluiceCore
import SluiceRabbitMQ
import SluiceSpawn
import SluiceTesting
import SluiceWire
import Synchronization
import Testing

/// Plain tasks whose outcomes go out in packs (a listener is bound to the
/// queue's pack key) are acknowledged by the packer once their pack is
/// confirmed. A worker killed then must lose no outcome: every delivery
/// whose pack was not confirmed is unacknowledged, so it runs again.
@Suite("Plain tasks' packed outcomes across a worker SIGKILL")
struct WorkerKillPackTests {
    /// The task ids heard in packs, with how often.
    final class Heard: Sendable {
        private let counts = Mutex<[String: Int]>([:])
        func add(_ ids: [String]) { counts.withLock { for id in ids { $0[id, default: 0] += 1 } } }
        var snapshot: [String: Int] { counts.withLock { $0 } }
        var count: Int { counts.withLock { $0.count } }
    }

    static func workerArguments(_ h: TaskHarness, queue: String) -> [String] {
        ["worker", "--url", h.url, "--prefix", h.topology.prefix, "--delivery-limit", "\(h.topology.deliveryLimit)",
         "--queue", queue, "--concurrency", "100", "--log-level", "warning"]
    }

    @Test("a worker SIGKILLed while plain tasks' outcomes go out in packs: another worker runs the rest, and every task's outcome reaches the pack listener")
    func workerKilled() async throws {
        let h = try await TaskHarness.make()
        let queue = "killpack"
        let heard = Heard()
        // Bound before any worker starts: the first outcomes already go in packs.
        let packs = try await h.broker.subscribeEvents(bindings: [h.topology.plainEventPackRoutingKey(queue: queue, kind: .succeeded)])
        let reader = Task {
            for try await delivery in packs {
                heard.add(((try? EventPack.decode(delivery.body)) ?? []).filter { $0.kind == .succeeded }.map(\.taskID))
            }
        }
        defer { reader.cancel() }
        // 20,000 quick tasks, a hundred at a time: each kill lands while a
        // pack's outcomes wait for its confirm (at this rate a pack holds
        // dozens) and while tasks run. Three kills, three chances to lose
        // an outcome acknowledged too early.
        let count = 20_000
        let request = TaskClient.Request(name: "sluice.echo", arguments: Array(#"{"n":1}"#.utf8), options: .init(queue: queue))
        let client = TaskClient(broker: h.broker)
        var ids: [String] = []
        for _ in 0..<(count / 1_000) {
            ids += try await client.enqueue(batch: Array(repeating: request, count: 1_000)).map { try $0.get() }
        }
        #expect(Set(ids).count == count)

        var heardAtKills: [Int] = []
        for threshold in [2_000, 6_000, 10_000] {
            let worker = try SluiceBinary.start(Self.workerArguments(h, queue: queue))
            defer { SluiceBinary.stopIfRunning(worker) }
            try await within(120, "\(threshold) outcomes heard in packs before a kill") {
                while heard.count < threshold {
                    if let exited = SluiceBinary.exited(worker, "a worker to be killed") { throw exited }
                    try await Task.sleep(for: .milliseconds(5))
                }
            }
            worker.signal(SIGKILL)
            _ = try await SluiceBinary.exitStatus(of: worker)
            heardAtKills.append(heard.count)
        }
        #expect(heardAtKills.last! < count, "the last kill came after every task had run: \(heardAtKills)")

        let last = try SluiceBinary.start(Self.workerArguments(h, queue: queue))
        defer { SluiceBinary.stopIfRunning(last) }
        do {
            try await within(120, "every task's outcome heard in a pack after the kills") {
                while heard.count < count {
                    if let exited = SluiceBinary.exited(last, "the last worker") { throw exited }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
        } catch let error as TimedOut {
            let missing = Set(ids).subtracting(heard.snapshot.keys)
            Issue.record("\(error); \(missing.count) never heard (heard at the kills: \(heardAtKills)); the last worker's log ends:\n\(SluiceBinary.logTail(of: last))")
            throw error
        }
        let final = heard.snapshot
        #expect(Set(final.keys) == Set(ids))
        // Nothing is left behind: the queue drains, nothing is unacknowledged.
        try await within(60, "the queue to drain") {
            while true {
                let state = try await h.broker.queueState(h.topology.workQueue(queue))
                if state.messageCount == 0 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        try await packs.cancel()
        await h.broker.close()
    }
}
