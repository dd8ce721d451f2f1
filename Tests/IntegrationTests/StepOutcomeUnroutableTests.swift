import Foundation
import SluiceAMQP
import SluiceCore
import SluiceRabbitMQ
import SluiceTesting
import SluiceWire
import SluiceWorker
import Testing

/// A workflow step's outcome must reach a coordinator. On a real broker:
/// a success whose outcome comes back unroutable (no coordinator queue bound
/// for its key) is not acknowledged away; the task goes back to its queue
/// and runs again.
@Suite("A step's outcome that no coordinator queue takes")
struct StepOutcomeUnroutableTests {
    static let steps = 5

    @Test("no coordinator queue: the steps are handed back and run again; once the queue is there their outcomes reach it and the steps are acked (alone, and in packs)",
          arguments: [false, true])
    func handedBackUntilRouted(packed: Bool) async throws {
        let h = try await TaskHarness.make(deliveryLimit: 50)
        let queue = "steps"
        try await h.broker.prepare(queues: [queue])
        // One run: with packs, its steps' outcomes share a pack key.
        let runID = "run-\(UUID().uuidString)"
        var published: Set<String> = []
        for index in 0..<Self.steps {
            var task = TaskEnvelope(name: "step.echo", queue: queue, arguments: Array("{}".utf8), workflowRunID: runID, workflowStep: "s\(index)")
            // The header a coordinator that reads packs sets: the outcome then goes in a pack only.
            if packed { task.eventPackBucket = Topology.stepEventBucket(runID: runID) }
            try await h.broker.publish(h.topology.message(for: task))
            published.insert(task.id)
        }
        let ids = published

        let runs = Locked<[String: Int]>([:])
        var registry = HandlerRegistry()
        registry.register("step.echo") { context in
            runs.withLock { $0[context.id, default: 0] += 1 }
            return nil
        }
        let worker = h.startWorker(queues: [queue], registry: registry)
        do {
            // Run, the outcome unroutable, handed back, run again: never acked with the outcome lost.
            try await within(60, "every step to run a second time (their outcomes came back unroutable)") {
                while runs.withLock({ r in ids.contains { r[$0, default: 0] < 2 } }) { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(worker.worker.stats.succeeded == 0, "a step was acknowledged although its outcome reached no coordinator queue")

            // The coordinator's queue appears: later runs' outcomes reach it, and the steps are acked.
            try await h.broker.prepareCoordinatorQueue(legacyEventBindings: false)
            try await within(120, "every step to be acknowledged once the coordinator queue is bound") {
                while worker.worker.stats.succeeded < Self.steps { try await Task.sleep(for: .milliseconds(20)) }
            }
            try await worker.stop()
        } catch {
            try? await worker.stop()
            throw error
        }
        #expect(worker.worker.stats.succeeded == Self.steps)
        // Acknowledged at the broker, not only counted: none is left, also none taken and never acked.
        #expect(try await h.readyOnceUnconsumed(queue) == 0)

        // (The coordinator queue has a single active consumer: no basic.get.)
        let channel = try await h.broker.connection.openChannel()
        let consumer = try await channel.consume(queue: h.topology.coordinatorQueue, noAck: true)
        let heard = try await within(60, "every step's outcome in the coordinator queue") {
            var heard: [TaskEvent] = []
            for try await delivery in consumer {
                #expect(Topology.isEventPackKey(delivery.routingKey) == packed, "routing key \(delivery.routingKey)")
                heard += Topology.isEventPackKey(delivery.routingKey)
                    ? try EventPack.decode(delivery.body) : [try TaskEvent.decode(delivery.body)]
                if Set(heard.map(\.taskID)) == ids { break }
            }
            return heard
        }
        try await consumer.cancel()
        #expect(heard.allSatisfy { $0.kind == .succeeded })
        #expect(heard.count == Self.steps, "each step's outcome once: \(heard.map(\.taskID))")
        for name in [h.topology.coordinatorQueue, h.topology.coordinatorDeadQueue, h.topology.workQueue(queue), h.topology.deadQueue(queue)] {
            _ = try? await channel.queueDelete(name)
        }
        try await channel.close()
    }
}
