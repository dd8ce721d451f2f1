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
    @Test("acknowledged only once the pack is confirmed; shutdown waits for those acknowledgements")
    func acknowledgedAfterThePack() async throws {
        let broker = InMemoryBroker(topology: try Topology(prefix: "packs"))
        let client = TaskClient(broker: broker)
        let heard = Mutex<[String]>([])
        let packs = try await broker.subscribeEvents(bindings: [broker.topology.plainEventPackRoutingKey(queue: "q", kind: .succeeded)])
        let reader = Task {
            for try await delivery in packs {
                let ids = ((try? EventPack.decode(delivery.body)) ?? []).map(\.taskID)
                heard.withLock { $0 += ids }
            }
        }
        let returned = Mutex(0)
        var registry = HandlerRegistry()
        registry.register("noop") { _ in
            returned.withLock { $0 += 1 }
            return nil
        }
        var configuration = Worker.Configuration(queues: ["q"], concurrency: 10, publishStartedEvents: false)
        configuration.unheardEventHold = .seconds(600)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let worker = Worker(broker: broker, registry: registry, configuration: configuration, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [worker], logger: logger))
        let stopped = Mutex(false)
        let running = Task {
            try await group.run()
            stopped.withLock { $0 = true }
        }

        // The first outcome goes alone as well and comes back unroutable:
        // from then on this queue's outcomes go in packs only.
        await broker.holdPlainPacks()
        let first = try await client.enqueue(name: "noop", json: Array("{}".utf8), options: .init(queue: "q"))
        try await within(30, "the first pack to be held") { while await broker.heldPackCount < 1 { await Task.yield() } }
        await broker.releasePlainPacks()
        try await within(30, "the first task to be settled") { while worker.stats.processed < 1 { await Task.yield() } }
        try await within(30, "the first outcome in a pack") { while heard.withLock({ $0 }).isEmpty { await Task.yield() } }
        #expect(heard.withLock { $0 } == [first])

        // Five more: their pack is held, so none of them is settled, although every handler returned.
        await broker.holdPlainPacks()
        var ids: [String] = []
        for _ in 0..<5 { ids.append(try await client.enqueue(name: "noop", json: Array("{}".utf8), options: .init(queue: "q"))) }
        try await within(30, "the next pack to be held") { while await broker.heldPackCount < 1 { await Task.yield() } }
        try await within(30, "every handler to return") { while returned.withLock({ $0 }) < 6 { await Task.yield() } }
        #expect(worker.stats.processed == 1)
        #expect(worker.stats.inFlight == 5)

        // Shutdown waits for them while the pack is unconfirmed (given a while to stop too early).
        await group.triggerGracefulShutdown()
        let deadline = TestTime.deadline(1)
        while ContinuousClock.now < deadline && !stopped.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
        #expect(!stopped.withLock { $0 }, "the worker stopped with outcomes unconfirmed")
        #expect(worker.stats.processed == 1)

        await broker.releasePlainPacks()
        try await within(30, "the worker to stop") { try await running.value }
        #expect(worker.stats.processed == 6)
        #expect(worker.stats.succeeded == 6)
        try await within(30, "every outcome in a pack") { while heard.withLock({ $0 }).count < 6 { await Task.yield() } }
        #expect(Set(heard.withLock { $0 }) == Set(ids + [first]))
        // Acknowledged before the consumer closed: nothing went back to the queue.
        #expect(try await broker.queueState(broker.topology.workQueue("q")).messageCount == 0)
        reader.cancel()
    }
}
