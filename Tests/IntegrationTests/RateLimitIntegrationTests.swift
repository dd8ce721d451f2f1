import Foundation
import SluiceClient
import SluiceCore
import SluiceTesting
import SluiceWorker
import Synchronization
import Testing

@Suite("Rate limits on the real broker")
struct RateLimitIntegrationTests {
    /// Waits (bounded) until `condition` holds: shares follow heartbeats, which no event announces.
    func waitUntil(_ what: String, _ condition: @escaping @Sendable () -> Bool) async throws {
        try await within(60, what) {
            while !condition() { try await Task.sleep(for: .milliseconds(50)) }
        }
    }

    /// The most starts within any `window` seconds.
    func busiest(_ starts: [ContinuousClock.Instant], window: Double) -> Int {
        let sorted = starts.sorted()
        var best = 0, first = 0
        for last in sorted.indices {
            while (sorted[last] - sorted[first]).timeInterval >= window { first += 1 }
            best = max(best, last - first + 1)
        }
        return best
    }

    @Test("two workers hold 20/s between them: starts stay under it and both take part; shares follow a worker that stops and one that joins; unlimited tasks among them all run")
    func fleetShare() async throws {
        let h = try await TaskHarness.make()
        let events = try await h.recordEvents()
        let queue = "rl"
        let starts = Mutex<[(worker: String, at: ContinuousClock.Instant)]>([])
        func registry(_ worker: String) -> HandlerRegistry {
            var r = HandlerRegistry()
            r.register("limited") { _ in
                starts.withLock { $0.append((worker, .now)) }
                return nil
            }
            r.register("free") { _ in nil }
            return r
        }
        let limit = RateLimit(.task("limited"), perSecond: 20)
        func start(_ id: String) -> RunningWorker {
            h.startWorker(queues: [queue], registry: registry(id)) {
                $0.workerID = "\(h.topology.prefix)-\(id)"
                $0.rateLimits = [limit]
            }
        }
        let a = start("a"), b = start("b")
        try await waitUntil("both workers to hold half of the limit") {
            a.worker.rateShare(of: limit.scope) == 10 && b.worker.rateShare(of: limit.scope) == 10
        }
        #expect(a.worker.rateShare(of: .task("free")) == nil)

        // Eighty limited tasks with twenty unlimited ones among them.
        let client = TaskClient(broker: h.broker)
        var ids: Set<String> = []
        for i in 0..<100 {
            ids.insert(try await client.enqueue(name: i % 5 == 4 ? "free" : "limited", json: Array("{}".utf8), options: .init(queue: queue)))
        }
        let outcomes = try await events.waitForOutcomes(ids, seconds: 120)
        #expect(outcomes.count == 100 && outcomes.values.allSatisfy { $0.kind == .succeeded })
        #expect(outcomes.values.filter { $0.taskName == "free" }.count == 20)

        let recorded = starts.withLock { $0 }
        #expect(recorded.count == 80)
        #expect(Set(recorded.map(\.worker)) == ["a", "b"])
        // At 20/s, eighty starts span about four seconds; unlimited, they take a fraction of one.
        let instants = recorded.map(\.at)
        let span = (instants.max()! - instants.min()!).timeInterval
        #expect(span >= 3.5, "80 starts at 20/s took only \(span) s")
        // Per worker at most `w × share + 1` starts in a window of w seconds;
        // one more each for a start and the handler it begins scheduled late.
        let busiest = busiest(instants, window: 2)
        #expect(busiest <= 2 * 20 + 4, "\(busiest) starts within 2 s under a limit of 20/s")

        // b stops: a takes the whole limit; c joins: they share it again.
        try await b.stop()
        try await waitUntil("the remaining worker to take the whole limit") { a.worker.rateShare(of: limit.scope) == 20 }
        let c = start("c")
        try await waitUntil("the workers to share the limit after one joined") {
            a.worker.rateShare(of: limit.scope) == 10 && c.worker.rateShare(of: limit.scope) == 10
        }
        try await a.stop()
        try await c.stop()
    }

    @Test("a queue's limit counts every task of the queue; a worker stopped while tasks wait for their start hands them back")
    func queueLimitAndShutdown() async throws {
        let h = try await TaskHarness.make()
        let events = try await h.recordEvents()
        let queue = "rlq"
        let ran = Mutex(0)
        var registry = HandlerRegistry()
        registry.register("x") { _ in ran.withLock { $0 += 1 }; return nil }
        registry.register("y") { _ in ran.withLock { $0 += 1 }; return nil }
        // One start every 100 s: the first runs, the rest wait for their start in the worker or the queue.
        let worker = h.startWorker(queues: [queue], registry: registry) {
            $0.workerID = "\(h.topology.prefix)-q"
            $0.rateLimits = [RateLimit(.queue(queue), perSecond: 0.01)]
            $0.prefetch = 5
        }
        let client = TaskClient(broker: h.broker)
        var ids: [String] = []
        for i in 0..<10 { ids.append(try await client.enqueue(name: i % 2 == 0 ? "x" : "y", json: Array("{}".utf8), options: .init(queue: queue))) }
        let first = try await events.waitForOutcomes([ids[0]])
        #expect(first[ids[0]]?.kind == .succeeded)
        try await worker.stop()
        #expect(ran.withLock { $0 } == 1)
        // The other nine are back in the queue, none dead or run.
        try await h.waitForReady(queue, count: 9, seconds: 30)
        #expect(await events.outcomes.count == 1)
    }
}
