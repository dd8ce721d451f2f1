import Foundation
import SluiceAMQP
import SluiceClient
import SluiceCore
import SluiceLocalBroker
import SluiceRabbitMQ
import SluiceTesting
import SluiceWire
import SluiceWorker
import SluiceWorkflow
import Synchronization
import Testing

@Suite("Unique tasks on the real broker")
struct UniqueTaskIntegrationTests {
    @Test("150 unique enqueues with distinct keys at once, on a connection of 12 channels, all enqueue: their locks' channels wait their turn")
    func burstOfDistinctKeys() async throws {
        // Each takes a channel for its lock's declaration and look-ups; with
        // more callers than channels they queue for them (SluiceAMQP) instead
        // of failing with "all 12 channels are in use".
        let h = try await TaskHarness.make(channelMax: 12)
        defer { Task { await h.broker.close() } }
        let q = "uburst"
        try await h.broker.prepare(queues: [q])
        let client = TaskClient(broker: h.broker)
        let run = UInt32.random(in: 0...UInt32.max)
        let outcomes = try await within(120, "150 unique enqueues") {
            try await withThrowingTaskGroup(of: UniqueEnqueue.self) { group in
                for i in 0..<150 {
                    group.addTask {
                        // A short window: the lock queues expire with it.
                        try await client.enqueueUnique(name: "job", json: Array("{}".utf8),
                                                       options: .init(queue: q, unique: UniqueKey("burst-\(run)-\(i)", for: .seconds(30))))
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
        }
        #expect(outcomes.filter(\.enqueued).count == 150)
        #expect(Set(outcomes.map(\.id)).count == 150)
        #expect(try await h.broker.queueState(h.topology.workQueue(q)).messageCount == 150)
    }

    @Test("producers on two connections racing with one key: exactly one task is enqueued, and every call returns its id")
    func race() async throws {
        let h = try await TaskHarness.make()
        let other = try await TaskHarness.make(prefix: h.topology.prefix)
        defer { Task { await h.broker.close(); await other.broker.close() } }
        let q = "uq"
        try await h.broker.prepare(queues: [q])
        let clients = [TaskClient(broker: h.broker), TaskClient(broker: other.broker)]
        let key = UniqueKey("invoice:7", for: .seconds(300))
        let outcomes = try await withThrowingTaskGroup(of: UniqueEnqueue.self) { group in
            for i in 0..<20 {
                group.addTask {
                    try await clients[i % 2].enqueueUnique(name: "job", json: Array("{}".utf8), options: .init(queue: q, unique: key))
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.filter(\.enqueued).count == 1, "\(outcomes)")
        #expect(Set(outcomes.map(\.id)).count == 1, "every call names the one task: \(outcomes)")
        let state = try await h.broker.queueState(h.topology.workQueue(q))
        #expect(state.messageCount == 1)
        // Another key is another lock.
        let another = try await clients[0].enqueueUnique(name: "job", json: Array("{}".utf8),
                                                         options: .init(queue: q, unique: UniqueKey("invoice:8", for: .seconds(300))))
        #expect(another.enqueued)
    }

    @Test("a worker gives the key back when the task succeeds, after a retry, not before; a restarted producer still sees the key held")
    func releasedByWorker() async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        let q = "uq"
        try await h.broker.prepare(queues: [q])
        let events = try await h.recordEvents()
        let key = UniqueKey("sync:acme", for: .seconds(600))
        let first = try await TaskClient(broker: h.broker).enqueueUnique(name: "flaky", json: Array("{}".utf8),
                                                                          options: .init(queue: q, unique: key))
        // A producer that started afterwards, on a connection of its own.
        let later = try await TaskHarness.make(prefix: h.topology.prefix)
        defer { Task { await later.broker.close() } }
        let duplicate = try await TaskClient(broker: later.broker).enqueueUnique(name: "flaky", json: Array("{}".utf8),
                                                                                 options: .init(queue: q, unique: key))
        #expect(!duplicate.enqueued && duplicate.id == first.id)

        let attempts = Mutex(0)
        let checked = OneShotSignal()
        var registry = HandlerRegistry()
        registry.register("flaky") { _ in
            // Fails its first run: the key stays held while the retry waits.
            // The retry finishes only once the test has checked that (a slow
            // machine could otherwise finish it first, freeing the key).
            if attempts.withLock({ $0 += 1; return $0 }) == 1 { throw FlakyFailure() }
            await checked.wait()
            return nil
        }
        let worker = h.startWorker(queues: [q], registry: registry) {
            $0.retryPolicy = RetryPolicy(maxAttempts: 3, baseMilliseconds: 1000, jitter: 0)
        }
        defer { Task { try? await worker.stop() } }
        _ = try await events.waitUntil("the first attempt's retry") { $0.contains { $0.taskID == first.id && $0.kind == .retrying } }
        let whileRetrying = try await TaskClient(broker: later.broker).enqueueUnique(name: "flaky", json: Array("{}".utf8),
                                                                                     options: .init(queue: q, unique: key))
        #expect(!whileRetrying.enqueued && whileRetrying.id == first.id, "held while the retry waits")
        checked.fire()
        _ = try await events.waitForOutcomes([first.id])
        let client = TaskClient(broker: later.broker)
        let next = try await within(60, "the key to be given back after the success") {
            while true {
                let outcome = try await client.enqueueUnique(name: "flaky", json: Array("{}".utf8), options: .init(queue: q, unique: key))
                if outcome.enqueued { return outcome }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(next.id != first.id)
    }

    @Test("sluice enqueue --unique and POST /v1/tasks with unique: the second returns the first's id and enqueues nothing")
    func cliAndAPI() async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        let q = "uq"
        try await h.broker.prepare(queues: [q])
        let common = ["--queue", q, "--unique", "nightly", "--unique-for", "10m", "--json", "--url", h.url, "--prefix", h.topology.prefix]
        let first = try await SluiceBinary.run(["enqueue", "job"] + common)
        let second = try await SluiceBinary.run(["enqueue", "job"] + common)
        #expect(first.status == 0 && second.status == 0, "\(first.output) \(second.output)")
        let a = try JSONValue.parse(Array(first.output.utf8)), b = try JSONValue.parse(Array(second.output.utf8))
        #expect(a["enqueued"] == true && b["enqueued"] == false, "\(first.output) \(second.output)")
        #expect(a["id"] != nil && a["id"] == b["id"])
        let bad = try await SluiceBinary.run(["enqueue", "job", "--unique", "k", "--unique-for", "500ms", "--url", h.url, "--prefix", h.topology.prefix])
        #expect(bad.status != 0 && bad.output.contains("1 s to 24 days"), "\(bad.output)")

        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: store)
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        try await coordinator.waitUntilHealthy()
        let body = Array(#"{"name": "job", "queue": "uq", "unique": {"key": "api-key", "forSeconds": 600}}"#.utf8)
        let created = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/tasks", body: body)
        let again = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/tasks", body: body)
        #expect(created.status == 201 && created.body["enqueued"] == true, "\(created.body)")
        #expect(again.status == 200 && again.body["enqueued"] == false && again.body["id"] == created.body["id"], "\(again.body)")
        let refused = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/tasks",
                                                           body: Array(#"{"name": "job", "unique": {"key": "k", "forSeconds": 0.5}}"#.utf8))
        #expect(refused.status == 400, "\(refused.body)")
        let state = try await h.broker.queueState(h.topology.workQueue(q))
        #expect(state.messageCount == 2, "one task per key")
    }

    @Test("lock queues are not declared again after a reconnect (a lock given back and its queue deleted stays gone)")
    func notRecorded() async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        let name = "unique-reconnect-\(UInt32.random(in: 0...UInt32.max))"
        let producer = try await RabbitMQBroker.connect(url: AMQPURL(h.url), topology: h.topology, connectionName: name)
        defer { Task { await producer.close() } }
        let events = producer.connection.events()
        try await producer.prepare(queues: ["uq"])
        let key = UniqueKey("k", for: .seconds(300))
        _ = try await TaskClient(broker: producer).enqueueUnique(name: "job", json: Array("{}".utf8), options: .init(queue: "uq", unique: key))
        let lock = h.topology.uniqueLockQueue(key)
        let admin = try await h.broker.connection.openChannel()
        for queue in [lock, h.topology.uniqueHolderQueue(ofLock: lock)] { _ = try await admin.queueDelete(queue) }

        #expect(try await SharedBroker.closeConnection(named: name, why: "unique locks across a reconnect", awaiting: events))
        // The work queue is recorded and back; the lock queue is not.
        let check = try await h.broker.connection.openChannel()
        _ = try await check.queueDeclarePassive(h.topology.workQueue("uq"))
        let error = await #expect(throws: AMQPError.self) { _ = try await check.queueDeclarePassive(lock) }
        #expect(error?.replyCode == 404)
    }

    @Test("a held key survives a broker restart (own node): a producer after it gets the first task's id; the worker then gives the key back")
    func brokerRestart() async throws {
        let node = PrivateBroker.unique("unique")
        try await node.start()
        do {
            let h = try await TaskHarness.make(url: node.amqpURL)
            let q = "uqr"
            let key = UniqueKey("report:2026-12", for: .seconds(600))
            let first = try await TaskClient(broker: h.broker).enqueueUnique(name: "job", json: Array("{}".utf8),
                                                                             options: .init(queue: q, unique: key))
            #expect(first.enqueued)
            await h.broker.close()
            try await node.stop()
            try await node.start()

            // A new producer (the same prefix) after the restart: the lock and its holder are still there.
            let same = try await TaskHarness.make(url: node.amqpURL, prefix: h.topology.prefix)
            let client = TaskClient(broker: same.broker)
            let again = try await client.enqueueUnique(name: "job", json: Array("{}".utf8), options: .init(queue: q, unique: key))
            #expect(!again.enqueued && again.id == first.id, "\(again)")
            // The task itself survived too; its worker gives the key back once it succeeds.
            let events = try await same.recordEvents()
            var registry = HandlerRegistry()
            registry.register("job") { _ in nil }
            let worker = same.startWorker(queues: [q], registry: registry)
            let outcome = try await events.waitForOutcomes([first.id])[first.id]
            #expect(outcome?.kind == .succeeded)
            let free = try await eventually(60, "the key to be free again") { () -> UniqueEnqueue? in
                let next = try await client.enqueueUnique(name: "job", json: Array("{}".utf8), options: .init(queue: q, unique: key))
                return next.id == first.id ? nil : next
            }
            #expect(free.enqueued)
            try await worker.stop()
            await same.broker.close()
        } catch {
            try? await node.destroy()
            throw error
        }
        try await node.destroy()
    }

    struct FlakyFailure: Error {}
}
