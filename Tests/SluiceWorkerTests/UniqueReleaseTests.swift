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

@Suite("Unique keys held until the task finishes: workers give the lock back")
struct UniqueReleaseTests {
    @Test("held while the task runs (a duplicate gets its id); free once it succeeded, and once another ended dead")
    func heldUntilFinished() async throws {
        let broker = InMemoryBroker(topology: try Topology(prefix: "ur"))
        let client = TaskClient(broker: broker)
        let release = OneShotSignal()
        var registry = HandlerRegistry()
        registry.register("slow") { _ in
            await release.wait()
            return nil
        }
        registry.register("fails") { _ in throw TestFailure() }
        let key = UniqueKey("k", for: .seconds(600))
        try await withWorker(broker, registry) {
            let first = try await client.enqueueUnique(name: "slow", json: Array("{}".utf8), options: .init(queue: "q", unique: key))
            let started = try await within(60, "the first task's start") {
                await broker.waitForEvents { $0.contains { $0.taskID == first.id && $0.kind == .started } }
            }
            #expect(started)
            let whileRunning = try await client.enqueueUnique(name: "slow", json: Array("{}".utf8), options: .init(queue: "q", unique: key))
            #expect(!whileRunning.enqueued && whileRunning.id == first.id)
            release.fire()
            let succeeded = try await within(60, "the first task's success") {
                await broker.waitForEvents { $0.contains { $0.taskID == first.id && $0.kind == .succeeded } }
            }
            #expect(succeeded)
            // Given back after the ack, which the event precedes: look until it is.
            let again = try await within(60, "the key to be free again") {
                while true {
                    let outcome = try await client.enqueueUnique(name: "fails", json: Array("{}".utf8),
                                                                 options: .init(queue: "q", maxAttempts: 1, unique: key))
                    if outcome.enqueued { return outcome }
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            #expect(again.id != first.id)
            let dead = try await within(60, "the failing task's dead event") {
                await broker.waitForEvents { $0.contains { $0.taskID == again.id && $0.kind == .dead } }
            }
            #expect(dead)
            let third = try await within(60, "the key to be free after the dead task") {
                while true {
                    let outcome = try await client.enqueueUnique(name: "slow", json: Array("{}".utf8), options: .init(queue: "q", unique: key))
                    if outcome.enqueued { return outcome }
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            #expect(third.id != again.id)
        }
    }

    @Test("a window-long key stays held after its task succeeded")
    func heldForWindow() async throws {
        let broker = InMemoryBroker(topology: try Topology(prefix: "uw"))
        let client = TaskClient(broker: broker)
        var registry = HandlerRegistry()
        registry.register("quick") { _ in nil }
        let key = UniqueKey("k", for: .seconds(600), policy: .forWindow)
        try await withWorker(broker, registry) {
            let first = try await client.enqueueUnique(name: "quick", json: Array("{}".utf8), options: .init(queue: "q", unique: key))
            let succeeded = try await within(60, "the task's success") {
                await broker.waitForEvents { $0.contains { $0.taskID == first.id && $0.kind == .succeeded } }
            }
            #expect(succeeded)
            let later = try await client.enqueueUnique(name: "quick", json: Array("{}".utf8), options: .init(queue: "q", unique: key))
            #expect(!later.enqueued && later.id == first.id)
        }
    }

    @Test("the worker reads a task's lock only from its own prefix's lock queues, and gives it back only well before it expires")
    func ticketChecks() throws {
        let t = try Topology(prefix: "ur")
        let lock = t.uniqueLockQueue(UniqueKey("k", for: .seconds(60)))
        let now = Date()
        #expect(UniqueLockTicket(queue: lock, expiresAt: now.addingTimeInterval(60)).isHeld(at: now))
        #expect(!UniqueLockTicket(queue: lock, expiresAt: now.addingTimeInterval(1)).isHeld(at: now), "within the clock margin")
        #expect(!UniqueLockTicket(queue: lock, expiresAt: now.addingTimeInterval(-1)).isHeld(at: now))
        for (header, expected) in [("ur.q.q 99999999999999", nil), ("\(lock) 99999999999999", lock), ("\(lock)", nil)] as [(String, String?)] {
            var task = TaskEnvelope(id: "t-1", name: "n", queue: "q", arguments: Array("{}".utf8))
            task.otherHeaders[WireHeader.uniqueLock] = .string(header)
            let (properties, body) = task.encode()
            var machine = SettlementStateMachine(settings: Self.settings(t), queue: "q", properties: properties, body: body)
            _ = machine.received(now: now)
            #expect(machine.uniqueLock?.ticket.queue == expected, "\(header)")
        }
    }

    static func settings(_ topology: Topology) -> SettlementStateMachine.Settings {
        SettlementStateMachine.Settings(topology: topology, workerID: "w", maxBodyBytes: 1 << 20, maxResultBytes: 1 << 20,
                                        retryPolicy: RetryPolicy(maxAttempts: 3), eventSigner: nil, publishStartedEvents: false)
    }

    struct TestFailure: Error {}

    private func withWorker(_ broker: InMemoryBroker, _ registry: HandlerRegistry, _ body: () async throws -> Void) async throws {
        try await withInMemoryWorker(broker, registry, Worker.Configuration(queues: ["q"], concurrency: 4, publishStartedEvents: true,
                                                                            middleware: []), body)
    }
}
