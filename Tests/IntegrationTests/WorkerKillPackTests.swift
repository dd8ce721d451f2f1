import Foundation
import SluiceClient
import SluiceCore
import SluiceRabbitMQ
import SluiceSpawn
import SluiceTesting
import SluiceWire
import Testing

/// Plain tasks whose outcomes go out in packs (a listener is bound to the
/// queue's pack key) are acknowledged by the packer once their pack is
/// confirmed. A worker killed then must lose no outcome: every delivery
/// whose pack was not confirmed is unacknowledged, so it runs again.
@Suite("Plain tasks' packed outcomes across a worker SIGKILL")
struct WorkerKillPackTests {
    static func workerArguments(_ h: TaskHarness, queue: String) -> [String] {
        ["worker", "--url", h.url, "--prefix", h.topology.prefix, "--delivery-limit", "\(h.topology.deliveryLimit)",
         "--queue", queue, "--concurrency", "100", "--log-level", "warning"]
    }

    @Test("a worker SIGKILLed while plain tasks' outcomes go out in packs: another worker runs the rest, and every task's outcome reaches the pack listener")
    func workerKilled() async throws {
        let h = try await TaskHarness.make()
        let queue = "killpack"
        // The task ids heard in packs, with how often.
        let heard = Locked<[String: Int]>([:])
        // Bound before any worker starts: the first outcomes already go in packs.
        let packs = try await h.broker.subscribeEvents(bindings: [h.topology.plainEventPackRoutingKey(queue: queue, kind: .succeeded)])
        let reader = Task {
            for try await delivery in packs {
                let ids = ((try? EventPack.decode(delivery.body)) ?? []).filter { $0.kind == .succeeded }.map(\.taskID)
                heard.withLock { for id in ids { $0[id, default: 0] += 1 } }
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
                while heard.withLock({ $0.count }) < threshold {
                    if let exited = SluiceBinary.exited(worker, "a worker to be killed") { throw exited }
                    try await Task.sleep(for: .milliseconds(5))
                }
            }
            worker.signal(SIGKILL)
            _ = try await SluiceBinary.exitStatus(of: worker)
            heardAtKills.append(heard.withLock { $0.count })
        }
        #expect(heardAtKills.last! < count, "the last kill came after every task had run: \(heardAtKills)")

        let last = try SluiceBinary.start(Self.workerArguments(h, queue: queue))
        defer { SluiceBinary.stopIfRunning(last) }
        do {
            try await within(120, "every task's outcome heard in a pack after the kills") {
                while heard.withLock({ $0.count }) < count {
                    if let exited = SluiceBinary.exited(last, "the last worker") { throw exited }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
        } catch let error as TimedOut {
            let missing = Set(ids).subtracting(heard.withLock { $0.keys })
            Issue.record("\(error); \(missing.count) never heard (heard at the kills: \(heardAtKills)); the last worker's log ends:\n\(SluiceBinary.logTail(of: last))")
            throw error
        }
        let final = heard.withLock { $0 }
        #expect(Set(final.keys) == Set(ids))
        // Nothing is left behind: once the last worker has stopped, the queue is empty
        // (counted with any delivery it took and never acked).
        last.terminate()
        _ = try await within(60, "the last worker to stop") { try await SluiceBinary.exitStatus(of: last) }
        let left = try await h.readyOnceUnconsumed(queue)
        #expect(left == 0, "\(left) tasks left in the queue after every outcome was heard")
        try await packs.cancel()
        await h.broker.close()
    }
}
