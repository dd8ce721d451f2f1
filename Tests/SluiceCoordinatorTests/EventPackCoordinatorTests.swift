import Foundation
import Logging
import ServiceLifecycle
@testable import SluiceCoordinator
import SluiceCore
import SluiceTesting
import SluiceWire
import SluiceWorker
import SluiceWorkflow
import Synchronization
import Testing

@Suite("Step outcomes in packs, at the coordinator")
struct EventPackCoordinatorTests {
    struct Acknowledger: DeliveryAcknowledger {
        func ack() async throws {}
        func reject(requeue: Bool) async throws {}
    }

    static func delivery(_ key: String, _ body: [UInt8]) -> BrokerDelivery {
        BrokerDelivery(properties: BasicProperties(), body: body, redelivered: false, deliveryCount: 0, routingKey: key,
                       acknowledger: Acknowledger())
    }

    static func withStore<T>(_ body: (RunEngine) async throws -> T) async throws -> T {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-pack-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try await SQLiteWorkflowStore.open(path: path)
        var logger = Logger(label: "test.packs")
        logger.logLevel = .critical
        do {
            try await store.migrate()
            let result = try await body(RunEngine(store: store, logger: logger))
            try await store.close()
            return result
        } catch {
            try? await store.close()
            throw error
        }
    }

    static func event(_ id: String, run: String) -> TaskEvent {
        var task = TaskEnvelope(id: id, name: "n", queue: "q", arguments: Array("{}".utf8))
        task.workflowRunID = run
        task.workflowStep = "s"
        return TaskEvent(kind: .succeeded, task: task)
    }

    @Test("a pack is read as its events; with an event key, a forged event in it is dropped alone and counted")
    func forgedInPack() async throws {
        let signer = try EventSigner(key: Array("0123456789abcdef0123456789abcdef".utf8))
        try await Self.withStore { engine in
            var configuration = Coordinator.Configuration()
            configuration.eventVerifier = signer
            var logger = Logger(label: "test.packs")
            logger.logLevel = .critical
            let coordinator = Coordinator(broker: InMemoryBroker(topology: try Topology(prefix: "pack")), engine: engine,
                                          configuration: configuration, logger: logger)
            let good = signer.signed(Self.event("t-1", run: "r-1"))
            var forged = signer.signed(Self.event("t-2", run: "r-2"))
            forged.result = #"{"changed":true}"#
            let alsoGood = signer.signed(Self.event("t-3", run: "r-1"))
            let pack = EventPack.message(exchange: "e", routingKey: "~wf.0.~pack.succeeded",
                                         bodies: [good, forged, alsoGood].map { $0.jsonBytes() })
            var items: [Coordinator.DecodedItem] = []
            coordinator.decode(Self.delivery(pack.routingKey, pack.body), index: 4, into: &items)
            #expect(items.map { $0.event?.taskID } == ["t-1", "t-3"])
            #expect(items.allSatisfy { $0.delivery == 4 })
            #expect(coordinator.forgedEvents == 1)

            // Not a pack: nothing, and nothing counted as forged (it is dropped as invalid).
            items = []
            coordinator.decode(Self.delivery("~wf.0.~pack.succeeded", good.jsonBytes()), index: 0, into: &items)
            coordinator.decode(Self.delivery("~wf.0.~pack.succeeded", Array("[1,".utf8)), index: 1, into: &items)
            #expect(items.isEmpty)
            #expect(coordinator.forgedEvents == 1)

            // One event on a step's own key is read as before.
            coordinator.decode(Self.delivery("~wf.0.q.succeeded", good.jsonBytes()), index: 2, into: &items)
            #expect(items.map { $0.event?.taskID } == ["t-1"])
        }
    }

    @Test("a run's step tasks name its partition's bucket, and their outcomes reach the coordinator in packs; off, one message each")
    func endToEnd() async throws {
        for packs in [true, false] {
            try await Self.withStore { engine in
                var logger = Logger(label: "test.packs")
                logger.logLevel = .critical
                let broker = InMemoryBroker(topology: try Topology(prefix: "pack\(packs)"))
                var configuration = Coordinator.Configuration(leaseTTL: .seconds(30), defaultQueue: "wf", pollInterval: .milliseconds(50))
                configuration.eventPacks = packs
                let coordinator = Coordinator(broker: broker, engine: engine, configuration: configuration, logger: logger)
                var registry = HandlerRegistry()
                registry.register("echo") { context in context.arguments }
                let worker = Worker(broker: broker, registry: registry, configuration: .init(queues: ["wf"], concurrency: 8), logger: logger)
                let watched = try await broker.subscribeEvents(bindings: ["~wf.#"])
                let keys = Mutex<[String]>([])
                let reader = Task { for try await delivery in watched { keys.withLock { $0.append(delivery.routingKey) } } }
                defer { reader.cancel() }

                let group = ServiceGroup(configuration: .init(services: [coordinator, worker], logger: logger))
                let running = Task { try await group.run() }
                defer { running.cancel() }
                try await within(30, "the coordinator to lead") {
                    while !coordinator.isActive { try await Task.sleep(for: .milliseconds(20)) }
                }
                try await engine.register(WorkflowDefinition(name: "fan") {
                    WorkflowStep.map("each", over: "input.items", task: "echo", arguments: ["i": "${index}"])
                    WorkflowStep.join("all", after: ["each"])
                })
                let run = try await engine.start(workflow: "fan", input: ["items": .array((0..<20).map { .number(Double($0)) })])
                try await within(60, "the run to complete") {
                    while try await engine.run(run.runID)?.status != .completed { try await Task.sleep(for: .milliseconds(20)) }
                }
                let seen = keys.withLock { $0 }.filter { $0.hasSuffix(".succeeded") }
                if packs {
                    #expect(!seen.isEmpty && seen.allSatisfy(Topology.isEventPackKey), "\(seen)")
                    #expect(seen.allSatisfy { $0 == "~wf.0.~pack.succeeded" }, "one partition: bucket 0")
                } else {
                    #expect(seen.count == 20 && !seen.contains(where: Topology.isEventPackKey), "\(seen)")
                }
                await group.triggerGracefulShutdown()
                try? await running.value
            }
        }
    }
}
