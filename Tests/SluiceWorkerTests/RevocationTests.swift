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

@Suite("Revocations: the list a worker keeps, and workers refusing or stopping revoked tasks")
struct RevocationTests {
    @Test("the list: a revoked id counts until the retention passes; terminate stays asked; markers and stale entries are ignored; over capacity the oldest go")
    func list() {
        let t0 = Date(timeIntervalSince1970: 1_000_000)
        var list = RevocationList(retention: 100, capacity: 10)
        #expect(list.apply(Revocation(taskIDs: ["a", "b"], at: t0, reason: "why"), now: t0).isEmpty)
        #expect(list.revocation(of: "a", now: t0 + 50) == .init(at: t0, terminate: false, reason: "why"))
        #expect(list.revocation(of: "a", now: t0 + 100) == nil, "past the retention")
        #expect(list.revocation(of: "c", now: t0) == nil)
        #expect(list.apply(Revocation(taskIDs: ["a"], terminate: true, at: t0 + 10), now: t0 + 10) == ["a"])
        #expect(list.apply(Revocation(taskIDs: ["a"], at: t0 + 20), now: t0 + 20).isEmpty)
        #expect(list.revocation(of: "a", now: t0 + 20)?.terminate == true, "a later plain revocation keeps terminate")
        #expect(list.revocation(of: "a", now: t0 + 110) != nil, "the later revocation counts from its own time")
        #expect(list.apply(Revocation(marker: "w/1", at: t0), now: t0).isEmpty)
        #expect(list.apply(Revocation(taskIDs: ["old"], at: t0 - 200), now: t0).isEmpty)
        #expect(list.revocation(of: "old", now: t0) == nil, "an entry read after its retention counts for nothing")
        for i in 0..<12 { _ = list.apply(Revocation(taskIDs: ["n\(i)"], at: t0 + Double(30 + i)), now: t0 + 50) }
        #expect(list.count <= 10)
        #expect(list.revocation(of: "n11", now: t0 + 50) != nil, "the newest stay")
        #expect(list.revocation(of: "b", now: t0 + 50) == nil, "the oldest went first")
    }

    @Test("entries round-trip as JSON; what is not one fails to decode")
    func coding() throws {
        let r = Revocation(taskIDs: ["x", "y"], terminate: true, at: Date(epochMilliseconds: 1_700_000_000_123), reason: "r")
        #expect(try Revocation.decode(r.jsonBytes()) == r)
        #expect(String(decoding: Revocation(taskIDs: ["x"], at: Date(epochMilliseconds: 5)).jsonBytes(), as: UTF8.self)
                == #"{"at":5,"taskIDs":["x"]}"#)
        for bad in ["", "[]", #"{"taskIDs":["x"]}"#, #"{"at":"soon"}"#, #"{"at":1,"taskIDs":"x"}"#] {
            #expect(throws: (any Error).self, "\(bad)") { try Revocation.decode(Array(bad.utf8)) }
        }
    }

    @Test("a task revoked before any worker ran never runs: a worker started later dead-letters it (reason revoked); others run")
    func revokedBeforeStart() async throws {
        let broker = InMemoryBroker(topology: try Topology(prefix: "rv"))
        let client = TaskClient(broker: broker)
        let revoked = try await client.enqueue(name: "job", json: Array("{}".utf8), options: .init(queue: "q"))
        let kept = try await client.enqueue(name: "job", json: Array("{}".utf8), options: .init(queue: "q"))
        try await client.revoke([revoked], reason: "not wanted")
        let ran = Mutex<[String]>([])
        var registry = HandlerRegistry()
        registry.register("job") { context in
            ran.withLock { $0.append(context.task.id) }
            return nil
        }
        try await withWorker(broker, registry) {
            let seen1 = try await within(60, "the revoked task's dead event and the other's success") {
                await broker.waitForEvents { events in
                    events.contains { $0.taskID == revoked && $0.kind == .dead } && events.contains { $0.taskID == kept && $0.kind == .succeeded }
                }
            }
            #expect(seen1)
        }
        let dead = try #require(await broker.events.first { $0.taskID == revoked && $0.kind == .dead })
        #expect(dead.deadReason == .revoked && dead.errorMessage?.contains("not wanted") == true, "\(dead)")
        #expect(ran.withLock { $0 } == [kept], "the revoked task's handler never ran")
        let letters = await broker.readyMessages(broker.topology.deadQueue("q"))
        #expect(letters.count == 1 && letters.first?.properties.messageId == revoked)
    }

    @Test("terminate cancels a running handler: it ends dead as revoked; a handler that finishes anyway has succeeded")
    func terminate() async throws {
        let broker = InMemoryBroker(topology: try Topology(prefix: "rt"))
        let client = TaskClient(broker: broker)
        let release = OneShotSignal()
        var registry = HandlerRegistry()
        registry.register("cancellable") { _ in
            try await Task.sleep(for: .seconds(600))
            return nil
        }
        registry.register("stubborn") { _ in
            await release.wait()  // ignores cancellation
            return Array("1".utf8)
        }
        try await withWorker(broker, registry, startedEvents: true) {
            let stopped = try await client.enqueue(name: "cancellable", json: Array("{}".utf8), options: .init(queue: "q"))
            let finished = try await client.enqueue(name: "stubborn", json: Array("{}".utf8), options: .init(queue: "q"))
            let seen2 = try await within(60, "both tasks' started events") {
                await broker.waitForEvents { events in [stopped, finished].allSatisfy { id in events.contains { $0.taskID == id && $0.kind == .started } } }
            }
            #expect(seen2)
            try await client.revoke([stopped, finished], terminate: true)
            let seen3 = try await within(60, "the cancelled task's dead event") {
                await broker.waitForEvents { $0.contains { $0.taskID == stopped && $0.kind == .dead } }
            }
            #expect(seen3)
            release.fire()
            let seen4 = try await within(60, "the success of the task that finished anyway") {
                await broker.waitForEvents { $0.contains { $0.taskID == finished && $0.kind == .succeeded } }
            }
            #expect(seen4)
            let dead = try #require(await broker.events.first { $0.taskID == stopped && $0.kind == .dead })
            #expect(dead.deadReason == .revoked, "\(dead)")
        }
    }

    /// Runs `body` with a worker of queue `q` running, then stops it.
    private func withWorker(_ broker: InMemoryBroker, _ registry: HandlerRegistry, startedEvents: Bool = false,
                            _ body: () async throws -> Void) async throws {
        try await withInMemoryWorker(broker, registry, Worker.Configuration(queues: ["q"], concurrency: 4, publishStartedEvents: startedEvents,
                                                                            middleware: []), body)
    }
}
