import Logging
import ServiceLifecycle
import SluiceClient
import SluiceCore
import SluiceTesting
import SluiceWire
import SluiceWorker
import Synchronization
import Testing

/// A plain task whose outcome goes only in a pack is acknowledged by the
/// packer once the pack is confirmed, after the task that ran it ended.
@Suite("Plain tasks settled by their outcome's pack (in-memory broker)")
struct PackedSettlementTests {
    /// A worker on queue `q` whose outcomes go in packs only, and what it ran and was heard.
    final class Record: Sendable {
        let stopped = Mutex(false)
        /// Task ids in the order their handlers returned (a task run twice is there twice).
        let returned = Mutex<[String]>([])
        /// Task ids of the outcomes a listener of the packs heard.
        let heard = Mutex<[String]>([])
    }

    final class Setup: Sendable {
        let broker: InMemoryBroker
        let client: TaskClient
        let worker: Worker
        let group: ServiceGroup
        let running: Task<Void, any Error>
        let record = Record()
        let reader: Task<Void, any Error>
        let first: String

        var workQueue: String { broker.topology.workQueue("q") }

        /// Starts the worker and runs a first task, whose outcome goes alone
        /// as well and comes back unroutable: from then on the queue's
        /// outcomes go in packs only.
        init() async throws {
            broker = InMemoryBroker(topology: try Topology(prefix: "packs"))
            client = TaskClient(broker: broker)
            let packs = try await broker.subscribeEvents(bindings: [broker.topology.plainEventPackRoutingKey(queue: "q", kind: .succeeded)])
            let record = self.record
            reader = Task {
                for try await delivery in packs {
                    let ids = ((try? EventPack.decode(delivery.body)) ?? []).map(\.taskID)
                    record.heard.withLock { $0 += ids }
                }
            }
            var registry = HandlerRegistry()
            registry.register("noop") { context in
                record.returned.withLock { $0.append(context.id) }
                return nil
            }
            var configuration = Worker.Configuration(queues: ["q"], concurrency: 10, publishStartedEvents: false)
            configuration.unheardEventHold = .seconds(600)
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            let worker = Worker(broker: broker, registry: registry, configuration: configuration, logger: logger)
            let group = ServiceGroup(configuration: .init(services: [worker], logger: logger))
            self.worker = worker
            self.group = group
            running = Task {
                try await group.run()
                record.stopped.withLock { $0 = true }
            }
            let broker = self.broker
            await broker.holdPlainPacks()
            first = try await client.enqueue(name: "noop", json: Array("{}".utf8), options: .init(queue: "q"))
            try await within(30, "the first outcome alone answered unroutable and its pack held") {
                while true {
                    let (unrouted, held) = (await broker.unroutedOutcomeEvents, await broker.heldPackCount)
                    if unrouted >= 1 && held >= 1 { return }
                    try await Task.sleep(for: .milliseconds(1))
                }
            }
            await broker.releasePlainPacks()
            try await within(30, "the first task to be settled") { while worker.stats.processed < 1 { try await Task.sleep(for: .milliseconds(1)) } }
        }

        /// Enqueues `count` tasks while packs are held; returns once every handler returned.
        func enqueueHeld(_ count: Int) async throws -> [String] {
            await broker.holdPlainPacks()
            var ids: [String] = []
            for _ in 0..<count { ids.append(try await client.enqueue(name: "noop", json: Array("{}".utf8), options: .init(queue: "q"))) }
            let record = self.record, broker = self.broker, expected = 1 + count
            try await within(30, "every handler to return and a pack to be held") {
                while true {
                    let held = await broker.heldPackCount
                    if record.returned.withLock({ $0.count }) >= expected && held >= 1 { return }
                    try await Task.sleep(for: .milliseconds(1))
                }
            }
            return ids
        }

        func waitHeard(_ count: Int) async throws {
            let record = self.record
            try await within(30, "\(count) outcomes in packs") { while record.heard.withLock({ $0.count }) < count { try await Task.sleep(for: .milliseconds(1)) } }
        }
    }

    @Test("acknowledged only once the pack is confirmed; shutdown waits for those acknowledgements")
    func acknowledgedAfterThePack() async throws {
        let s = try await Setup()
        try await s.waitHeard(1)
        #expect(s.record.heard.withLock { $0 } == [s.first])

        // Five more: their pack is held, so none of them is acknowledged, although every handler returned.
        let ids = try await s.enqueueHeld(5)
        #expect(s.worker.stats.processed == 1)
        #expect(s.worker.stats.inFlight == 5)
        #expect(await s.broker.unackedCount(s.workQueue) == 5)

        // Shutdown waits for them while the pack is unconfirmed (given a while to stop too early).
        await s.group.triggerGracefulShutdown()
        let deadline = TestTime.deadline(1)
        while ContinuousClock.now < deadline && !s.record.stopped.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
        #expect(!s.record.stopped.withLock { $0 }, "the worker stopped with outcomes unconfirmed")
        #expect(await s.broker.unackedCount(s.workQueue) == 5)

        await s.broker.releasePlainPacks()
        try await within(30, "the worker to stop") { try await s.running.value }
        #expect(s.worker.stats.processed == 6)
        #expect(s.worker.stats.succeeded == 6)
        // Acknowledged before the worker stopped: nothing unacknowledged, nothing back in the queue.
        #expect(await s.broker.unackedCount(s.workQueue) == 0)
        #expect(try await s.broker.queueState(s.workQueue).messageCount == 0)
        try await s.waitHeard(6)
        #expect(Set(s.record.heard.withLock { $0 }) == Set(ids + [s.first]))
        s.reader.cancel()
    }

    @Test("a refused pack hands its deliveries back: those tasks run again; events that waited for the next pack are not touched")
    func refusedPack() async throws {
        let s = try await Setup()
        // A's pack is held; B and C finish meanwhile and wait for the next pack.
        let a = try await s.enqueueHeld(1)[0]
        var waiting: [String] = []
        for _ in 0..<2 { waiting.append(try await s.client.enqueue(name: "noop", json: Array("{}".utf8), options: .init(queue: "q"))) }
        let record = s.record
        try await within(30, "B and C to finish") { while record.returned.withLock({ $0.count }) < 4 { try await Task.sleep(for: .milliseconds(1)) } }
        #expect(await s.broker.unackedCount(s.workQueue) == 3)

        await s.broker.releasePlainPacks(refusing: true)
        try await within(30, "A to run again") { while record.returned.withLock({ $0.count }) < 5 { try await Task.sleep(for: .milliseconds(1)) } }
        try await s.waitHeard(4)
        let worker = s.worker
        try await within(30, "every delivery to be settled") { while worker.stats.processed < 5 { try await Task.sleep(for: .milliseconds(1)) } }
        let runs = record.returned.withLock { $0 }
        #expect(runs.filter { $0 == a }.count == 2, "A ran again after its pack was refused: \(runs)")
        #expect(waiting.allSatisfy { id in runs.filter { $0 == id }.count == 1 }, "B and C ran once: \(runs)")
        #expect(worker.stats.succeeded == 4, "a success counts once, when it is acknowledged")
        #expect(record.heard.withLock { $0 }.sorted() == ([s.first, a] + waiting).sorted(), "each outcome heard once")
        #expect(await s.broker.unackedCount(s.workQueue) == 0)
        #expect(try await s.broker.queueState(s.workQueue).messageCount == 0)
        await s.group.triggerGracefulShutdown()
        try await within(30, "the worker to stop") { try await s.running.value }
        s.reader.cancel()
    }
}
