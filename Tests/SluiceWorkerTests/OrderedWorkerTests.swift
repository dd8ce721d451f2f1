import Foundation
import Logging
import ServiceLifecycle
import SluiceClient
import SluiceCore
@testable import SluiceWorker
import SluiceTesting
import SluiceWire
import Synchronization
import Testing

@Suite("Ordered tasks on the in-memory broker")
struct OrderedWorkerTests {
    @Test("per key one at a time in enqueue order, a failing task holding its key until its retry in place succeeds; keys run in parallel")
    func perKeyOrder() async throws {
        let broker = InMemoryBroker(topology: try Topology(prefix: "ord"))
        let client = TaskClient(broker: broker)
        struct Args: Codable { var key: String; var n: Int }
        let log = Mutex<[String: [Int]]>([:])
        let running = Mutex<[String: Int]>([:])
        let overlaps = Mutex(0)
        let failedOnce = Mutex<Set<String>>([])
        var registry = HandlerRegistry()
        registry.register("step") { context in
            let args = try JSONDecoder().decode(Args.self, from: Data(context.arguments))
            running.withLock { r in
                if r[args.key, default: 0] > 0 { overlaps.withLock { $0 += 1 } }
                r[args.key, default: 0] += 1
            }
            defer { running.withLock { $0[args.key, default: 0] -= 1 } }
            try await Task.sleep(for: .milliseconds(1))
            // Task 5 of each key fails its first attempt: its key's later tasks wait for its retry.
            if args.n == 5, failedOnce.withLock({ $0.insert(args.key).inserted }) { throw TaskFailure("once") }
            log.withLock { $0[args.key, default: []].append(args.n) }
            return nil
        }
        var configuration = Worker.Configuration(queues: ["q"], concurrency: 8,
                                                 retryPolicy: RetryPolicy(maxAttempts: 3, baseMilliseconds: 20, jitter: 0))
        configuration.ordered = true
        let keys = (0..<6).map { "k\($0)" }
        try await withInMemoryWorker(broker, registry, configuration) {
            for n in 0..<20 {
                for key in keys {
                    let args = String(decoding: try JSONEncoder().encode(Args(key: key, n: n)), as: UTF8.self)
                    _ = try await client.enqueue(name: "step", json: Array(args.utf8), options: .init(queue: "q", orderKey: key))
                }
            }
            let done = try await within(60, "every key's twenty tasks") {
                await broker.waitForEvents { $0.filter { $0.kind == .succeeded }.count == 120 }
            }
            #expect(done)
        }
        for key in keys { #expect(log.withLock { $0[key] } == Array(0..<20), "key \(key)") }
        #expect(overlaps.withLock { $0 } == 0)
        #expect(await broker.events.filter { $0.kind == .retrying }.count == 6)
        // No task went through the plain queue (the delay ladder leads there).
        #expect(try await broker.queueState(Topology(prefix: "ord").workQueue("q")).messageCount == 0)
    }

    @Test("enqueue refuses an order key with a delay, a priority level, or a bad key")
    func refused() async throws {
        let client = TaskClient(broker: InMemoryBroker(topology: try Topology(prefix: "ord2")))
        await #expect(throws: SluiceError.self) {
            try await client.enqueue(name: "x", json: Array("{}".utf8), options: .init(queue: "q", delay: .seconds(5), orderKey: "k"))
        }
        await #expect(throws: SluiceError.self) {
            try await client.enqueue(name: "x", json: Array("{}".utf8), options: .init(queue: "q", priority: .high, orderKey: "k"))
        }
        await #expect(throws: SluiceError.self) {
            try await client.enqueue(name: "x", json: Array("{}".utf8), options: .init(queue: "q", orderKey: ""))
        }
    }

    @Test("a worker whose heartbeat subscription ends subscribes again and hears its peers (an ordered peer joins its roster)")
    func heartbeatsFollowedAgain() async throws {
        let topology = try Topology(prefix: "beats")
        let broker = InMemoryBroker(topology: topology)
        var configuration = Worker.Configuration(queues: ["q"], concurrency: 1, heartbeatInterval: .milliseconds(200))
        configuration.ordered = true
        configuration.workerID = "me"
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let worker = Worker(broker: broker, registry: HandlerRegistry(), configuration: configuration, logger: logger)
        let gate = try #require(worker.rateGate)
        let group = ServiceGroup(configuration: .init(services: [worker], logger: logger))
        let running = Task { try await group.run() }
        defer { running.cancel() }
        // It follows the heartbeats (its own beat came back, or 3 s passed with the subscription made).
        try await within(30, "the worker hearing its own heartbeat") { await gate.heardSelf.wait() }
        await broker.failEventSubscriptions(SluiceError(.broker, "the channel was closed"))
        // A peer that starts beating only now is heard through a new subscription.
        let peer = WorkerHeartbeat(worker: "peer", host: "h", pid: 1, queues: ["q"], concurrency: 1, inFlight: 0, processed: 0,
                                   succeeded: 0, retried: 0, dead: 0, startedAt: Date(epochMilliseconds: 1_000), at: Date(),
                                   intervalSeconds: 1, orderedQueues: ["q"])
        try await within(30, "the peer in the worker's roster after its heartbeats were subscribed again") {
            while !gate.orderedMembers("q").contains("peer 1000") {
                var beat = peer
                beat.at = Date()
                _ = try await broker.publish([topology.heartbeatMessage(beat)])
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        await group.triggerGracefulShutdown()
        try await running.value
    }
}
