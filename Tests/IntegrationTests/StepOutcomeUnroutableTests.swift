import Foundation
import SluiceAMQP
import SluiceCore
import SluiceRabbitMQ
import SluiceTesting
import SluiceWire
import SluiceWorker
import Testing

/// A workflow step's outcome must reach a coordinator. On a real broker:
/// one that comes back unroutable (no coordinator queue bound for its key)
/// is not acknowledged away; the task goes back to its queue and runs again.
@Suite("A step's outcome that no coordinator queue takes")
struct StepOutcomeUnroutableTests {
    @Test("no coordinator queue: the step is handed back and runs again; once the queue is there its outcome reaches it and the step is acked (alone, and in a pack)",
          arguments: [false, true])
    func handedBackUntilRouted(packed: Bool) async throws {
        let h = try await TaskHarness.make(deliveryLimit: 50)
        let queue = "steps"
        try await h.broker.prepare(queues: [queue])
        let runID = "run-\(UUID().uuidString)"
        var task = TaskEnvelope(name: "step.echo", queue: queue, arguments: Array("{}".utf8), workflowRunID: runID, workflowStep: "s")
        // The header a coordinator that reads packs sets: the outcome then goes in a pack only.
        if packed { task.eventPackBucket = Topology.stepEventBucket(runID: runID) }
        try await h.broker.publish(h.topology.message(for: task))

        let runs = Locked(0)
        var registry = HandlerRegistry()
        registry.register("step.echo") { _ in
            runs.withLock { $0 += 1 }
            return nil
        }
        let worker = h.startWorker(queues: [queue], registry: registry)

        // Run, its outcome unroutable, handed back, run again: never acked with the outcome lost.
        try await within(60, "the step to run a second time (its outcome came back unroutable)") {
            while runs.withLock({ $0 }) < 2 { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(worker.worker.stats.succeeded == 0, "a step was acknowledged although its outcome reached no coordinator queue")

        // The coordinator's queue appears: a later run's outcome reaches it, and the step is acked.
        try await h.broker.prepareCoordinatorQueue(legacyEventBindings: false)
        try await within(120, "the step to be acknowledged once the coordinator queue is bound") {
            while worker.worker.stats.succeeded < 1 { try await Task.sleep(for: .milliseconds(20)) }
        }
        try await worker.stop()
        #expect(worker.worker.stats.succeeded == 1)

        // (The coordinator queue has a single active consumer: no basic.get.)
        let channel = try await h.broker.connection.openChannel()
        let consumer = try await channel.consume(queue: h.topology.coordinatorQueue, noAck: true)
        let delivery = try #require(try await take(1, from: consumer, within: 60).first)
        try await consumer.cancel()
        #expect(Topology.isEventPackKey(delivery.routingKey) == packed, "routing key \(delivery.routingKey)")
        let outcomes = Topology.isEventPackKey(delivery.routingKey)
            ? try EventPack.decode(delivery.body) : [try TaskEvent.decode(delivery.body)]
        #expect(outcomes.map(\.taskID) == [task.id])
        #expect(outcomes.first?.kind == .succeeded)
        // Acknowledged: nothing of it is left in the work queue (the worker has stopped, so none is held).
        #expect(try await h.broker.queueState(h.topology.workQueue(queue)).messageCount == 0)
        for name in [h.topology.coordinatorQueue, h.topology.coordinatorDeadQueue, h.topology.workQueue(queue), h.topology.deadQueue(queue)] {
            _ = try? await channel.queueDelete(name)
        }
        try await channel.close()
    }
}
