import Foundation
import SluiceClient
import SluiceCore
import SluiceLocalBroker
import SluiceRabbitMQ
import SluiceSpawn
import SluiceTesting
import SluiceWorker
import Synchronization
import Testing

@Suite("Strict order per key on the real broker")
struct OrderIntegrationTests {
    struct Step: Codable, Hashable { var k: String; var n: Int }

    /// Each key's steps in the order they ran, consecutive repeats (a task
    /// run again after its worker died, at least once) counted once.
    static func collapsed(_ steps: [Step]) -> [String: [Int]] {
        var out: [String: [Int]] = [:]
        for step in steps where out[step.k]?.last != step.n { out[step.k, default: []].append(step.n) }
        return out
    }

    static func json(_ step: Step) -> [UInt8] { Array(try! JSONEncoder().encode(step)) }

    @Test("10,000 tasks over 100 keys, four worker processes, the busiest SIGKILLed midway: every key's tasks ran one after another in enqueue order")
    func processesAndKill() async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        let events = try await h.recordEvents()
        let queue = "ordered"
        var workers: [ChildProcess] = []
        defer { for worker in workers { SluiceBinary.stopIfRunning(worker) } }
        for _ in 0..<4 {
            workers.append(try SluiceBinary.start(["worker", "--url", h.url, "--prefix", h.topology.prefix, "--queue", queue,
                                                   "--ordered", "--concurrency", "16", "--log-level", "warning"]))
        }
        let client = TaskClient(broker: h.broker)
        var ids: Set<String> = []
        let keys = (0..<100).map { "customer-\($0)" }
        for n in 0..<100 {
            let requests = keys.map { key in
                TaskClient.Request(name: "sluice.echo", arguments: Self.json(Step(k: key, n: n)), options: .init(queue: queue, orderKey: key))
            }
            for result in try await client.enqueue(batch: requests) { ids.insert(try result.get()) }
        }
        #expect(ids.count == 10_000)
        // Midway, kill the worker that has run the most (the partitions' active consumer).
        let midway = try await events.waitUntil("3,000 tasks done", seconds: 300) { $0.filter { $0.kind == .succeeded }.count >= 3_000 }
        var byWorker: [String: Int] = [:]
        for event in midway where event.kind == .succeeded { byWorker[event.worker ?? "", default: 0] += 1 }
        let busiest = byWorker.max { $0.value < $1.value }!.key
        let victim = workers.first { busiest.hasSuffix(":\($0.processIdentifier)") }
        #expect(victim != nil, "no worker process is \(busiest)")
        victim?.signal(SIGKILL)
        let outcomes = try await events.waitForOutcomes(ids, seconds: 600)
        #expect(outcomes.count == 10_000)
        #expect(outcomes.values.allSatisfy { $0.kind == .succeeded }, "\(outcomes.values.filter { $0.kind != .succeeded }.prefix(3))")

        // Events of one key arrive in the order its tasks finished: each is
        // confirmed before its task's ack, and the next task of the key is
        // delivered only after that ack (or, its worker killed, after the
        // broker saw the connection go).
        let all = await events.events
        let steps = all.filter { $0.kind == .succeeded }.compactMap { event in
            event.result.flatMap { try? JSONDecoder().decode(Step.self, from: Data($0.utf8)) }
        }
        let order = Self.collapsed(steps)
        for key in keys { #expect(order[key] == Array(0..<100), "key \(key): \(order[key]?.prefix(20) ?? [])") }
        let ranBy = Set(all.filter { $0.kind == .succeeded }.compactMap(\.worker))
        #expect(ranBy.count >= 2, "the killed worker's partitions went on elsewhere")
    }

    @Test("a broker restart while an ordered worker runs (own node): the worker reconnects and every key's order holds")
    func brokerRestart() async throws {
        let node = PrivateBroker.unique("order", plugins: "rabbitmq_consistent_hash_exchange")
        try await node.start()
        do {
            let h = try await TaskHarness.make(url: node.amqpURL)
            let queue = "ordered"
            let ran = Mutex<[Step]>([])
            let overlaps = Mutex(0)
            let running = Mutex<Set<String>>([])
            var registry = HandlerRegistry()
            registry.register("step") { context in
                let step = try JSONDecoder().decode(Step.self, from: Data(context.arguments))
                if !running.withLock({ $0.insert(step.k).inserted }) { overlaps.withLock { $0 += 1 } }
                try await Task.sleep(for: .milliseconds(5))
                ran.withLock { $0.append(step) }
                running.withLock { _ = $0.remove(step.k) }
                return nil
            }
            let worker = h.startWorker(queues: [queue], registry: registry) { $0.ordered = true }
            let client = TaskClient(broker: h.broker)
            let keys = (0..<10).map { "k\($0)" }
            for n in 0..<30 {
                for key in keys {
                    _ = try await client.enqueue(name: "step", json: Self.json(Step(k: key, n: n)), options: .init(queue: queue, orderKey: key))
                }
            }
            try await within(120, "a third of the tasks to run before the restart") {
                while ran.withLock({ $0.count }) < 100 { try await Task.sleep(for: .milliseconds(20)) }
            }
            try await node.stop()
            try await node.start()
            try await within(180, "every task to run after the restart") {
                while Set(ran.withLock { $0 }).count < 300 { try await Task.sleep(for: .milliseconds(50)) }
            }
            try await worker.stop()
            await h.broker.close()
            let order = Self.collapsed(ran.withLock { $0 })
            for key in keys { #expect(order[key] == Array(0..<30), "key \(key): \(order[key] ?? [])") }
            #expect(overlaps.withLock { $0 } == 0)
        } catch {
            try? await node.destroy()
            throw error
        }
        try await node.destroy()
    }
}
