import Foundation
import SluiceCore
import SluiceWire
import Testing

/// Workflow steps report on keys of their own, so the coordinator's queue
/// receives their outcomes and no plain task's (issue 12).
@Suite("Step event routing keys")
struct StepEventKeyTests {
    static let topology = try! Topology(prefix: "p")

    static func event(_ kind: TaskEvent.Kind, runID: String?) -> TaskEvent {
        TaskEvent(kind: kind, task: TaskEnvelope(id: "t", name: "n", queue: "orders.eu", arguments: [],
                                                 workflowRunID: runID, workflowStep: runID == nil ? nil : "s"))
    }

    @Test("a step's event key starts with ~wf and its bucket; a plain task's is <queue>.<kind>")
    func keys() {
        let t = Self.topology
        #expect(t.eventRoutingKey(for: Self.event(.succeeded, runID: nil)) == "orders.eu.succeeded")
        let bucket = Topology.stepEventBucket(runID: "run-1")
        #expect(t.eventRoutingKey(for: Self.event(.dead, runID: "run-1")) == "~wf.\(bucket).orders.eu.dead")
        #expect(t.eventMessage(Self.event(.retrying, runID: "run-1")).routingKey == "~wf.\(bucket).orders.eu.retrying")
    }

    @Test("buckets are stable, in range, and spread")
    func buckets() {
        // Pinned: workers and coordinators of different builds must agree.
        #expect(Topology.stepEventBucket(runID: "run-1") == 60)
        #expect(Topology.stepEventBucket(runID: "") == 5)
        let used = Set((0..<2000).map { _ in Topology.stepEventBucket(runID: UUID().uuidString) })
        #expect(used.allSatisfy { (0..<Topology.stepEventBuckets).contains($0) })
        #expect(used.count == Topology.stepEventBuckets, "2,000 ids reach every bucket")
    }

    @Test("the coordinator's bindings take steps' outcomes only; monitors' #.<kind> still see both")
    func bindings() {
        let t = Self.topology
        let step = t.eventRoutingKey(for: Self.event(.succeeded, runID: "r"))
        let plain = t.eventRoutingKey(for: Self.event(.succeeded, runID: nil))
        let started = t.eventRoutingKey(for: Self.event(.started, runID: "r"))
        #expect(t.coordinatorBindings.contains { TopicPattern.matches($0, step) })
        #expect(!t.coordinatorBindings.contains { TopicPattern.matches($0, plain) })
        #expect(!t.coordinatorBindings.contains { TopicPattern.matches($0, started) })
        #expect(t.legacyCoordinatorBindings.contains { TopicPattern.matches($0, plain) })
        #expect(TopicPattern.matches("#.succeeded", step) && TopicPattern.matches("#.succeeded", plain))
    }

    @Test("the in-memory broker routes as RabbitMQ would: plain outcomes reach the coordinator only with legacy bindings")
    func inMemoryRouting() async throws {
        for legacy in [false, true] {
            let broker = InMemoryBroker(topology: Self.topology)
            try await broker.prepareCoordinatorQueue(legacyEventBindings: legacy)
            try await broker.publish(Self.topology.eventMessage(Self.event(.succeeded, runID: nil)))
            try await broker.publish(Self.topology.eventMessage(Self.event(.succeeded, runID: "r")))
            let queued = await broker.readyMessages(Self.topology.coordinatorQueue)
            #expect(queued.count == (legacy ? 2 : 1), "legacy \(legacy)")
            #expect(queued.contains { $0.routingKey.hasPrefix("~wf.") })
        }
    }
}
