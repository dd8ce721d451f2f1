import Foundation
import Logging
import CoreMetrics
import MetricsTestKit
import ServiceLifecycle
import SluiceClient
import SluiceCore
import SluiceWire
import Synchronization
@testable import SluiceWorker
import Testing

@Suite("Worker on the in-memory broker")
struct WorkerInMemoryTests {
    func run(_ broker: InMemoryBroker, _ registry: HandlerRegistry, policy: RetryPolicy = RetryPolicy(baseMilliseconds: 0, jitter: 0),
             timeLimit: Duration? = nil, middleware: [any WorkerMiddleware] = [LoggingMiddleware(), MetricsMiddleware()],
             metricsFactory: (any MetricsFactory)? = nil,
             until done: @escaping @Sendable ([TaskEvent]) -> Bool) async throws -> [TaskEvent] {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        var configuration = Worker.Configuration(queues: ["q"], concurrency: 4, retryPolicy: policy, timeLimit: timeLimit,
                                                 timeLimitGrace: .milliseconds(100), publishStartedEvents: false,
                                                 middleware: middleware)
        configuration.metricsFactory = metricsFactory
        let worker = Worker(broker: broker, registry: registry, configuration: configuration, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [worker], logger: logger))
        let running = Task { try await group.run() }
        let waiter = Task { await broker.waitForEvents(done) }
        let timeout = Task {
            try await Task.sleep(for: .seconds(60))
            waiter.cancel()
        }
        let finished = await waiter.value
        timeout.cancel()
        #expect(finished, "timed out after 60 s waiting for the expected events")
        await group.triggerGracefulShutdown()
        try await running.value
        return await broker.events
    }

    @Test("the metrics middleware counts runs by outcome and times them, per task name and queue")
    func metrics() async throws {
        let broker = InMemoryBroker(topology: try Topology(prefix: "mem"))
        let client = TaskClient(broker: broker)
        let metrics = TestMetrics()
        var registry = HandlerRegistry()
        registry.register("ok") { _ in nil }
        registry.register("flaky") { c in
            if c.attempt < 2 { throw TaskFailure("once") }
            return nil
        }
        var ids: Set<String> = []
        for _ in 0..<3 { ids.insert(try await client.enqueue(name: "ok", json: Array("{}".utf8), options: .init(queue: "q"))) }
        ids.insert(try await client.enqueue(name: "flaky", json: Array("{}".utf8), options: .init(queue: "q")))
        let all = ids
        _ = try await run(broker, registry, middleware: [MetricsMiddleware(factory: metrics)], metricsFactory: metrics) { events in
            Set(events.filter { $0.kind == .succeeded }.map(\.taskID)) == all
        }
        let okSucceeded = try metrics.expectCounter("sluice_task_runs_total", [("task", "ok"), ("queue", "q"), ("outcome", "succeeded")])
        #expect(okSucceeded.totalValue == 3)
        let flakyFailed = try metrics.expectCounter("sluice_task_runs_total", [("task", "flaky"), ("queue", "q"), ("outcome", "failed")])
        #expect(flakyFailed.totalValue == 1)
        let flakySucceeded = try metrics.expectCounter("sluice_task_runs_total", [("task", "flaky"), ("queue", "q"), ("outcome", "succeeded")])
        #expect(flakySucceeded.totalValue == 1)
        // What became of the deliveries: 4 succeeded, 1 retried.
        let delivered = try metrics.expectCounter("sluice_tasks_total", [("task", "ok"), ("queue", "q"), ("outcome", "succeeded")])
        #expect(delivered.totalValue == 3)
        let retried = try metrics.expectCounter("sluice_tasks_total", [("task", "flaky"), ("queue", "q"), ("outcome", "retried")])
        #expect(retried.totalValue == 1)
        let waits = try metrics.expectTimer("sluice_task_wait_seconds", [("queue", "q")])
        #expect(waits.values.count == 5)
        let okTimer = try metrics.expectTimer("sluice_task_duration_seconds", [("task", "ok"), ("queue", "q")])
        #expect(okTimer.values.count == 3)
    }

    @Test("a middleware that reports itself inactive is left out of the chain; the tracing middleware is, without a tracer")
    func inactiveMiddleware() async throws {
        let broker = InMemoryBroker(topology: try Topology(prefix: "mem"))
        let client = TaskClient(broker: broker)
        var registry = HandlerRegistry()
        registry.register("ok") { _ in nil }
        let id = try await client.enqueue(name: "ok", json: Array("{}".utf8), options: .init(queue: "q"))
        let activeCalls = Counted(active: true), inactiveCalls = Counted(active: false)
        _ = try await run(broker, registry, middleware: [activeCalls.middleware, inactiveCalls.middleware]) { events in
            events.contains { $0.kind == .succeeded && $0.taskID == id }
        }
        #expect(activeCalls.count == 1)
        #expect(inactiveCalls.count == 0)
        // No tracer is bootstrapped in this test process.
        #expect(!TracingMiddleware().isActive)
        #expect(LoggingMiddleware().isActive && MetricsMiddleware().isActive)
    }

    /// Counts the tasks its middleware wraps; `active` says whether that middleware asks to be in the chain.
    final class Counted: Sendable {
        private let calls = Mutex(0)
        private let active: Bool
        init(active: Bool) { self.active = active }
        var count: Int { calls.withLock { $0 } }
        var middleware: any WorkerMiddleware { Wrapper(owner: self) }

        struct Wrapper: WorkerMiddleware {
            let owner: Counted
            var isActive: Bool { owner.active }
            func handle(_ context: TaskContext, next: @escaping @Sendable (TaskContext) async throws -> [UInt8]?) async throws -> [UInt8]? {
                owner.calls.withLock { $0 += 1 }
                return try await next(context)
            }
        }
    }

    @Test("success, retry to success, and dead-lettering, with outcomes confirmed before acks")
    func outcomes() async throws {
        let broker = InMemoryBroker(topology: try Topology(prefix: "mem"))
        let client = TaskClient(broker: broker)
        var registry = HandlerRegistry()
        registry.register("ok") { _ in Array("1".utf8) }
        registry.register("flaky") { c in
            if c.attempt < 2 { throw TaskFailure("once") }
            return nil
        }
        registry.register("never") { _ in throw TaskFailure.permanent("no") }
        let ok = try await client.enqueue(name: "ok", json: Array("{}".utf8), options: .init(queue: "q"))
        let flaky = try await client.enqueue(name: "flaky", json: Array("{}".utf8), options: .init(queue: "q"))
        let never = try await client.enqueue(name: "never", json: Array("{}".utf8), options: .init(queue: "q"))
        let unknown = try await client.enqueue(name: "nobody", json: Array("{}".utf8), options: .init(queue: "q"))
        let ids: Set = [ok, flaky, never, unknown]
        let events = try await run(broker, registry) { events in
            Set(events.filter { $0.kind == .succeeded || $0.kind == .dead }.map(\.taskID)) == ids
        }
        // A task's outcome, not its last event: the retry copy is confirmed before
        // the `retrying` event is sent, so the retry can succeed before that event.
        func final(_ id: String) -> TaskEvent? { events.last { $0.taskID == id && ($0.kind == .succeeded || $0.kind == .dead) } }
        #expect(final(ok)?.kind == .succeeded)
        #expect(final(ok)?.result == "1")
        #expect(final(flaky)?.kind == .succeeded)
        #expect(final(flaky)?.attempt == 2)
        #expect(events.contains { $0.taskID == flaky && $0.kind == .retrying })
        #expect(final(never)?.deadReason == .nonRetryable)
        #expect(final(unknown)?.deadReason == .unknownTask)
        let beats = await broker.otherEventMessages.filter { $0.routingKey == "_workers.heartbeat" }
        #expect(!beats.isEmpty, "the worker announces itself on start")
        let beat = try JSONSerialization.jsonObject(with: Data(beats[0].body)) as? [String: Any]
        #expect(beat?["queues"] as? [String] == ["q"])
        #expect(beat?["concurrency"] as? Int == 4)
        let dead = await broker.readyMessages("mem.dead.q")
        #expect(Set(dead.compactMap(\.properties.messageId)) == [never, unknown])
        #expect(await broker.readyMessages("mem.q.q").isEmpty)
    }

    @Test("the soft time limit cancels a slow handler; one that ignores cancellation is waited for; both fail as time_limit")
    func timeLimit() async throws {
        let broker = InMemoryBroker(topology: try Topology(prefix: "tl"))
        let client = TaskClient(broker: broker)
        var registry = HandlerRegistry()
        let cutShort = Mutex(false)
        registry.register("slow") { _ in
            do {
                try await Task.sleep(for: .seconds(600))  // cancellable
            } catch {
                cutShort.withLock { $0 = true }
                throw error
            }
            return nil
        }
        registry.register("stubborn") { _ in
            // Ignores cancellation: waits (in a task that is not cancelled) past the
            // limit and the grace period, then returns. No busy loop: that would
            // starve the two-thread pool the other tests share.
            await Task.detached { try? await Task.sleep(for: .milliseconds(400)) }.value
            return nil
        }
        let slow = try await client.enqueue(name: "slow", json: Array("{}".utf8), options: .init(queue: "q", maxAttempts: 1))
        let stubborn = try await client.enqueue(name: "stubborn", json: Array("{}".utf8), options: .init(queue: "q", maxAttempts: 1))
        let events = try await run(broker, registry, timeLimit: .milliseconds(100)) { events in
            Set(events.filter { $0.kind == .dead }.map(\.taskID)) == [slow, stubborn]
        }
        // Observed, not timed (a loaded machine took 26 s here): the 600 s sleep was cancelled.
        #expect(cutShort.withLock { $0 }, "the slow handler was cut short")
        for id in [slow, stubborn] {
            let dead = events.last { $0.taskID == id }
            #expect(dead?.errorType == "time_limit")
            #expect(dead?.deadReason == .maxAttempts)
        }
    }

    @Test("the client rejects bad input with the task and queue in the error")
    func clientErrors() async throws {
        let client = TaskClient(broker: InMemoryBroker(topology: try Topology()))
        let badJSON = await #expect(throws: SluiceError.self) {
            try await client.enqueue(name: "t", json: Array("{".utf8), options: .init(queue: "q"))
        }
        #expect(badJSON?.task == "t")
        #expect(badJSON?.queue == "q")
        await #expect(throws: SluiceError.self) { try await client.enqueue(name: "t", json: Array("{}".utf8), options: .init(queue: "no spaces")) }
        await #expect(throws: SluiceError.self) { try await client.enqueue(name: "", json: Array("{}".utf8)) }
        await #expect(throws: SluiceError.self) { try await client.enqueue(name: "t", json: Array("{}".utf8), options: .init(maxAttempts: 0)) }
    }
}
