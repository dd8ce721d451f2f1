import Foundation
import SluiceAMQP
import SluiceClient
import SluiceCore
import SluiceRabbitMQ
import SluiceTesting
import SluiceWire
import SluiceWorker
import Synchronization
import Testing

@Suite("Priority levels on the real broker")
struct PriorityIntegrationTests {
    /// Start order of tasks, by their `n` argument's prefix.
    final class Starts: Sendable {
        private let order = Mutex<[String]>([])
        func add(_ kind: String) { order.withLock { $0.append(kind) } }
        var all: [String] { order.withLock { $0 } }
    }

    /// The level each run saw, by task id (and `id#attempt`).
    final class Levels: Sendable {
        private let seen = Mutex<[String: TaskPriority]>([:])
        func set(_ key: String, _ level: TaskPriority) { seen.withLock { $0[key] = level } }
        subscript(key: String) -> TaskPriority? { seen.withLock { $0[key] } }
    }

    static func registry(_ starts: Starts, levels: Levels) -> HandlerRegistry {
        var registry = HandlerRegistry()
        registry.register("job") { context in
            let kind = String(decoding: context.arguments, as: UTF8.self).contains("high") ? "high" : "low"
            starts.add(kind)
            levels.set(context.id, context.priority)
            // Slow enough that the two slots stay busy and levels compete for them.
            try await Task.sleep(for: .milliseconds(3))
            return nil
        }
        registry.register("flaky") { context in
            levels.set("\(context.id)#\(context.attempt)", context.priority)
            if context.attempt == 1 { throw TaskFailure("once") }
            return nil
        }
        registry.register("doomed") { context in
            levels.set("\(context.id)#\(context.attempt)", context.priority)
            throw TaskFailure(kind: "doomed", "never", retryable: false)
        }
        return registry
    }

    /// How many low tasks started before the last high one, in `starts` from `from` on.
    static func lowsBeforeLastHigh(_ starts: [String]) -> (lows: Int, highs: Int) {
        guard let last = starts.lastIndex(of: "high") else { return (starts.count, 0) }
        let head = starts[...last]
        return (head.filter { $0 == "low" }.count, head.filter { $0 == "high" }.count)
    }

    @Test("high tasks enqueued behind a low backlog start first, low still gets its share; again after a worker restart")
    func orderAndShares() async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        let events = try await h.recordEvents()
        let client = TaskClient(broker: h.broker)
        let starts = Starts()
        let levels = Levels()
        let q = "prio"
        var lows: [String] = []
        for i in 0..<400 {
            lows.append(try await client.enqueue(name: "job", json: Array(#"{"n":"low-\#(i)"}"#.utf8), options: .init(queue: q, priority: .low)))
        }
        var highs: Set<String> = []
        for i in 0..<40 {
            highs.insert(try await client.enqueue(name: "job", json: Array(#"{"n":"high-\#(i)"}"#.utf8), options: .init(queue: q, priority: .high)))
        }
        try await h.waitForReady("\(q)~low", count: 400)
        try await h.waitForReady("\(q)~high", count: 40)
        var worker = h.startWorker(queues: [q], registry: Self.registry(starts, levels: levels)) {
            $0.concurrency = 2
            $0.priorities = .standard
        }
        _ = try await events.waitForOutcomes(highs)
        try await worker.stop()
        let first = Self.lowsBeforeLastHigh(starts.all)
        #expect(first.highs == 40)
        // 6:1 while both wait: about 7 lows beside 40 highs, plus the few the worker took before the highs queued behind them.
        #expect(first.lows <= 40, "40 high tasks waited for \(first.lows) low ones of 400: \(starts.all.prefix(100))")
        #expect(first.lows >= 2, "low was starved while high had work: \(starts.all.prefix(60))")
        #expect(highs.allSatisfy { levels[$0] == .high }, "each high task knew its level")

        // A new worker after a restart: the levels are still there, and still weighed.
        let before = starts.all.count
        var moreHighs: Set<String> = []
        for i in 0..<40 {
            moreHighs.insert(try await client.enqueue(name: "job", json: Array(#"{"n":"high-b\#(i)"}"#.utf8), options: .init(queue: "\(q)~high")))
        }
        try await h.waitForReady("\(q)~high", count: 40)
        worker = h.startWorker(queues: [q], registry: Self.registry(starts, levels: levels)) {
            $0.concurrency = 2
            $0.priorities = .standard
        }
        _ = try await events.waitForOutcomes(moreHighs)
        let second = Self.lowsBeforeLastHigh(Array(starts.all.dropFirst(before)))
        #expect(second.highs == 40)
        #expect(second.lows <= 40 && second.lows >= 2, "after the restart: \(second.lows) lows before the last of 40 highs")
        // Every low task runs in the end.
        _ = try await events.waitForOutcomes(Set(lows), seconds: 120)
        try await worker.stop()
    }

    @Test("retries come back to their level; a dead task keeps it, and sluice dead replay puts it back there")
    func retriesAndDeadKeepLevel() async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        let events = try await h.recordEvents()
        let client = TaskClient(broker: h.broker)
        let starts = Starts()
        let levels = Levels()
        let q = "prio-retry"
        let worker = h.startWorker(queues: [q], registry: Self.registry(starts, levels: levels)) {
            $0.priorities = .standard
            $0.retryPolicy = RetryPolicy(maxAttempts: 3, baseMilliseconds: 100, jitter: 0)
        }
        let flaky = try await client.enqueue(name: "flaky", json: Array("{}".utf8), options: .init(queue: q, priority: .low))
        // As a foreign producer that only routes to the level: no sluice-priority header.
        let doomed = "raw-doomed-\(UInt32.random(in: 0...UInt32.max))"
        try await h.publishRaw(queue: "\(q)~high", body: Array("{}".utf8), properties: BasicProperties(
            contentType: "application/json", deliveryMode: 2, messageId: doomed, type: "doomed"))
        let outcomes = try await events.waitForOutcomes([flaky, doomed])
        #expect(outcomes[flaky]?.kind == .succeeded)
        #expect(outcomes[doomed]?.kind == .dead)
        #expect(levels["\(flaky)#2"] == .low, "the retry came back through the delay ladder to the low level")
        #expect(levels["\(doomed)#1"] == .high)
        let dead = try await h.takeDead(q)
        #expect(dead.count == 1)
        #expect(dead.first?.properties.headers?[WireHeader.priority]?.stringValue == "high",
                "the worker wrote the level it took the task from")
        // takeDead acked it away: dead-letter it once more, then replay it with the CLI.
        let again = try await client.enqueue(name: "doomed", json: Array("{}".utf8), options: .init(queue: q, priority: .high))
        _ = try await events.waitForOutcomes([again])
        try await worker.stop()
        let common = ["--url", h.url, "--prefix", h.topology.prefix]
        let replay = try await SluiceBinary.run(["dead", "replay", q, "--all"] + common)
        #expect(replay.status == 0, "\(replay.output)")
        try await h.waitForReady("\(q)~high", count: 1)
        let refused = try await SluiceBinary.run(["dead", "list", "\(q)~high"] + common)
        #expect(refused.status != 0 && refused.output.contains("every level of a queue shares its dead"), "\(refused.output)")
    }

    @Test("sluice enqueue --priority puts a task on its level; bad levels and weights are refused with a message")
    func cli() async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        let common = ["--url", h.url, "--prefix", h.topology.prefix]
        let low = try await SluiceBinary.run(["enqueue", "job", "--queue", "cli-prio", "--priority", "low"] + common)
        #expect(low.status == 0, "\(low.output)")
        try await h.waitForReady("cli-prio~low", count: 1)
        let named = try await SluiceBinary.run(["enqueue", "job", "--queue", "cli-prio~high"] + common)
        #expect(named.status == 0, "\(named.output)")
        try await h.waitForReady("cli-prio~high", count: 1)
        let badLevel = try await SluiceBinary.run(["enqueue", "job", "--priority", "urgent"] + common)
        #expect(badLevel.status != 0)
        #expect(badLevel.output.contains("high") && badLevel.output.contains("low"), "\(badLevel.output)")
        let badQueue = try await SluiceBinary.run(["enqueue", "job", "--queue", "cli-prio~urgent"] + common)
        #expect(badQueue.status != 0)
        #expect(badQueue.output.contains("~high or ~low"), "\(badQueue.output)")
        let badWeights = try await within(60, "sluice worker to refuse the weights") {
            try await SluiceBinary.run(["worker", "--priorities", "--priority-weights", "6,0,1"] + common)
        }
        #expect(badWeights.status != 0)
        #expect(badWeights.output.contains("must be from 1 to 1000"), "\(badWeights.output)")
    }
}
