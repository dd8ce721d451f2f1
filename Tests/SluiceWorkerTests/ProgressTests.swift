import Foundation
import Logging
import ServiceLifecycle
import SluiceClient
import SluiceCore
@testable import SluiceWorker
import SluiceTesting
import Testing

@Suite("Progress reports from handlers")
struct ProgressTests {
    @Test("at most one report a second per task goes out; a report of 1 always does; tasks are limited apart")
    func rateLimit() {
        let sink = ProgressSink(worker: "w")
        let t0 = ContinuousClock.now
        #expect(sink.admit(taskID: "a", fraction: 0.1, now: t0))
        #expect(!sink.admit(taskID: "a", fraction: 0.2, now: t0 + .milliseconds(500)))
        #expect(sink.admit(taskID: "b", fraction: 0.2, now: t0 + .milliseconds(500)), "another task has its own budget")
        #expect(sink.admit(taskID: "a", fraction: 1, now: t0 + .milliseconds(600)), "done always goes out")
        #expect(!sink.admit(taskID: "a", fraction: 0.5, now: t0 + .milliseconds(1500)))
        #expect(sink.admit(taskID: "a", fraction: 0.5, now: t0 + .milliseconds(1700)))
    }

    @Test("a tracked task's reports are published on its tracking key, clamped, with the worker's id")
    func published() async throws {
        let broker = InMemoryBroker(topology: try Topology(prefix: "mem"))
        try await broker.prepareTrackingQueue()
        let client = TaskClient(broker: broker)
        let id = try await client.enqueue(name: "long", json: Array("{}".utf8), options: .init(queue: "q", track: true))
        // Held until the test has seen its start event: a tracked task's start
        // goes out only while it still runs (DeferredStarts).
        let gate = OneShotSignal()
        var registry = HandlerRegistry()
        registry.register("long") { context in
            context.progress(1.7, message: "more than done")
            await gate.wait()
            return nil
        }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        var configuration = Worker.Configuration(queues: ["q"], concurrency: 1, middleware: [])
        configuration.workerID = "host:1"
        let worker = Worker(broker: broker, registry: registry, configuration: configuration, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [worker], logger: logger))
        let running = Task { try await group.run() }
        // Bounded by SluiceTesting's `within`; false (not a throw) on time-out, so the worker is still stopped below.
        let done = (try? await within(60, "the start, progress and outcome events") {
            guard await broker.waitForEvents({ events in events.contains { $0.kind == .started } }) else { return false }
            gate.fire()
            return await broker.waitForEvents { events in events.contains { $0.kind == .progress } && events.contains { $0.kind == .succeeded } }
        }) ?? false
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(done, "timed out waiting for the start, progress and outcome events")
        let events = await broker.events
        let progress = try #require(events.first { $0.kind == .progress })
        #expect(progress.taskID == id && progress.progress == 1 && progress.progressMessage == "more than done")
        #expect(progress.tracked == true && progress.worker == "host:1")
        #expect(broker.topology.eventRoutingKey(for: progress) == "~track.q.progress")
        #expect(events.contains { $0.kind == .started && $0.taskID == id }, "a tracked task that still runs has its start reported")
        #expect(events.contains { $0.kind == .queued && $0.taskID == id }, "the producer's queued event")
    }
}
