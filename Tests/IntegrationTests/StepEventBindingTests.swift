import Foundation
import SluiceAMQP
import SluiceCore
import SluiceRabbitMQ
import SluiceTesting
import SluiceWire
import Testing

/// On a real broker: the coordinator queue receives workflow steps' outcomes
/// and no plain task's, and the bindings an earlier version left behind are
/// removed (or kept, during an upgrade, with legacy bindings).
@Suite("Step events reach the coordinator queue alone")
struct StepEventBindingTests {
    static func event(_ topology: Topology, runID: String?) -> OutboundMessage {
        topology.eventMessage(TaskEvent(kind: .succeeded, task: TaskEnvelope(
            id: UUID().uuidString, name: "n", queue: "orders", arguments: [], workflowRunID: runID,
            workflowStep: runID == nil ? nil : "s")))
    }

    /// Publishes a plain and a step outcome; returns how many reached the coordinator queue.
    static func delivered(_ h: TaskHarness) async throws -> Int {
        // Events are mandatory: one no queue takes comes back unroutable.
        for runID in [nil, "run-\(UUID().uuidString)"] {
            do { try await h.broker.publish(Self.event(h.topology, runID: runID)) } catch where PublishFailure.isUnroutable(error) {}
        }
        // Then a step outcome as an end marker, behind both (each publish was
        // confirmed first), and read the queue up to it. (Not counted through a
        // passive declare: on a busy node a quorum queue's count reads 0 when
        // its answer is late.)
        var marker = Self.event(h.topology, runID: "run-marker")
        let markerID = "marker-\(UUID().uuidString)"
        marker.properties.messageId = markerID
        try await h.broker.publish(marker)
        let channel = try await h.broker.connection.openChannel()
        let consumer = try await channel.consume(queue: h.topology.coordinatorQueue, noAck: true)
        let taken = try await within(60, "the end marker in the coordinator queue") {
            var taken = 0
            for try await delivery in consumer {
                if delivery.properties.messageId == markerID { return taken }
                taken += 1
            }
            return -1
        }
        try await channel.close()
        return taken
    }

    @Test("with the old bindings left by an earlier version, preparing removes them; legacy bindings put them back")
    func bindings() async throws {
        let h = try await TaskHarness.make()
        // What a coordinator before step event keys left on the durable queue.
        try await h.broker.prepare(queues: [])
        let channel = try await h.broker.connection.openChannel()
        try await channel.queueDeclare(h.topology.coordinatorQueueDeclaration)
        for key in h.topology.legacyCoordinatorBindings {
            try await channel.queueBind(queue: h.topology.coordinatorQueue, exchange: h.topology.eventsExchange, routingKey: key)
        }
        try await channel.close()
        #expect(try await Self.delivered(h) == 2, "the old bindings take every outcome")

        try await h.broker.prepareCoordinatorQueue(legacyEventBindings: false)
        #expect(try await Self.delivered(h) == 1, "only the step's outcome")

        try await h.broker.prepareCoordinatorQueue(legacyEventBindings: true)
        #expect(try await Self.delivered(h) == 2, "during an upgrade: old workers' keys too")

        try await h.broker.prepareCoordinatorQueue(legacyEventBindings: false)
        #expect(try await Self.delivered(h) == 1)
        await h.broker.close()
    }
}

