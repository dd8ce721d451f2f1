import Foundation
import Logging
import ServiceLifecycle
@testable import SluiceCoordinator
import SluiceCore
import SluiceTesting
import SluiceWire
import SluiceWorkflow
import Synchronization
import Testing

@Suite("The outbox relay (in-memory broker, SQLite)")
struct OutboxRelayTests {
    /// What a test of the relay works with.
    struct Relay {
        let broker: InMemoryBroker
        /// The store's file, also reachable around the engine (and around `store`'s wrapper).
        let sqlite: SQLiteWorkflowStore
        let engine: RunEngine
        let coordinator: Coordinator
    }

    /// Runs `body` with a coordinator (its relay) on an in-memory broker and a
    /// temporary SQLite file, then shuts it down and removes the file, also
    /// when `body` throws. `prepare` may write rows before the coordinator
    /// starts and wrap the store the engine uses.
    private func withRelay(configuration: Coordinator.Configuration,
                           prepare: (SQLiteWorkflowStore) async throws -> any WorkflowStore = { $0 },
                           _ body: (Relay) async throws -> Void) async throws {
        var logger = Logger(label: "test.relay")
        logger.logLevel = .critical
        let broker = InMemoryBroker(topology: try Topology(prefix: "relay"))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-relay-\(UUID().uuidString).sqlite").path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let sqlite = try await SQLiteWorkflowStore.open(path: path)
        let engine: RunEngine
        do {
            engine = RunEngine(store: try await prepare(sqlite), logger: logger)
        } catch {
            try? await sqlite.close()
            throw error
        }
        let coordinator = Coordinator(broker: broker, engine: engine, configuration: configuration, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [coordinator], logger: logger))
        let running = Task { try await group.run() }
        let outcome: Result<Void, any Error>
        do {
            try await body(Relay(broker: broker, sqlite: sqlite, engine: engine, coordinator: coordinator))
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        await group.triggerGracefulShutdown()
        _ = await running.result
        if case .failure(let error) = outcome {
            try? await sqlite.close()
            throw error
        }
        try await sqlite.close()
    }

    /// A row written to the store outside the engine's commits (as a schedule
    /// writes its tasks) is published even while the in-memory feed never
    /// runs dry: the relay reads the store first when told it changed.
    @Test("a row only the store holds is published while the feed stays busy")
    func storeRowsUnderLoad() async throws {
        // A short poll: a relay that found nothing (before the busy feed began, or
        // a wake rung before it waited) looks again soon, not after a minute.
        try await withRelay(configuration: .init(leaseTTL: .seconds(30), defaultQueue: "wf", pollInterval: .seconds(1))) { relay in
            let (broker, engine) = (relay.broker, relay.engine)
            // Keeps thousands of rows in the feed all the time (rows the store does not hold: publishing them is harmless).
            // Topped up to the feed's capacity (20,000; more is dropped) whenever 5,000 or more
            // fit: on an idle machine the relay drained 500 rows per 5 ms (the feed ran dry and the
            // test's premise failed), and in a full run, with this loop kept waiting by other tests,
            // it once drained a refill of 10,000.
            let busy = Task {
                var next: Int64 = 1_000_000_000
                while !Task.isCancelled {
                    let room = OutboxFeed.capacity - engine.outboxFeed.count
                    if room >= 5_000 {
                        engine.outboxFeed.append((0..<room).map { i in
                            OutboxEntry(id: next + Int64(i), task: StepTask(taskID: "busy-\(next + Int64(i))", name: "t", queue: "busy", arguments: [:],
                                                                            maxAttempts: nil, retry: nil, runID: "", stepID: "", index: nil),
                                        createdAt: Date())
                        })
                        next += Int64(room)
                    }
                    // A shorter sleep only burned CPU the relay needs when the whole suite shares two cores.
                    try? await Task.sleep(for: .milliseconds(5))
                }
            }
            defer { busy.cancel() }
            try await within(30, "the coordinator to lead") { while !relay.coordinator.isActive { try await Task.sleep(for: .milliseconds(20)) } }
            // (This once took 35-65 s in full runs, and sometimes never came:
            // a store read that returned nothing sent the relay back to the
            // store every second while the feed's rows waited for a wake.)
            try await within(60, "the feed's rows to be published") {
                while await broker.readyMessages(broker.topology.workQueue("busy")).isEmpty { try await Task.sleep(for: .milliseconds(20)) }
            }
            // Written around the engine, so the feed never sees it.
            var run = RunState(runID: "store-only", workflow: "x", version: 1, input: [:], steps: [:], createdAt: Date())
            run.status = .running
            try await relay.sqlite.commit([RunChange(run: run, isNew: true, publish: [
                StepTask(taskID: "store-only/a/0", name: "t", queue: "wf", arguments: [:], maxAttempts: nil, retry: nil,
                         runID: "store-only", stepID: "a", index: nil)])])
            relay.coordinator.outboxChanged()
            // Nothing else publishes to "wf".
            // The feed's length read just before each look, so the premise is checked when the row is found.
            let feedWhenFound = try await within(60, "the store-only row to be published while the feed is busy") {
                while true {
                    let feed = engine.outboxFeed.count
                    if await !broker.readyMessages(broker.topology.workQueue("wf")).isEmpty { return feed }
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            #expect(feedWhenFound > 0, "the feed was still busy")
        }
    }

    /// A backlog only the store holds (after a takeover, a burst of
    /// schedules) is read page by page: the rows at its front, published
    /// already, stay in the store until a commit deletes them, and here that
    /// deletion fails until the test lets it. Reading from the oldest row
    /// each time would return only those, and the rows behind them would
    /// wait; and without asking again, the failed deletion would leave the
    /// rows in the store until the coordinator restarts. The store is slow
    /// here (each read 100 ms, 63 pages): a pass must not start over at the
    /// oldest row before its end (it did after 5 s, and on a loaded machine
    /// never got through).
    @Test("a store-only backlog is paged through past published rows still in the store; a failed deletion is asked again")
    func storeBacklogPaged() async throws {
        let count = 1_000
        var store: SwitchableStore?
        try await withRelay(configuration: .init(leaseTTL: .seconds(30), defaultQueue: "wf", outboxBatch: 16, pollInterval: .seconds(1)),
                            prepare: { sqlite in
            // Written before the coordinator leads: only the store has these rows.
            var run = RunState(runID: "backlog", workflow: "x", version: 1, input: [:], steps: [:], createdAt: Date())
            run.status = .running
            try await sqlite.commit([RunChange(run: run, isNew: true, publish: (0..<count).map { i in
                StepTask(taskID: "backlog/a/\(i)", name: "t", queue: "wf", arguments: [:], maxAttempts: nil, retry: nil,
                         runID: "backlog", stepID: "a", index: i)
            })])
            let switchable = SwitchableStore(sqlite)
            switchable.failDeletions(.max)
            switchable.delayOutboxReads(.milliseconds(100))
            store = switchable
            return switchable
        }) { relay in
            let (broker, sqlite, store) = (relay.broker, relay.sqlite, try #require(store))
            try await within(60, "every row of the backlog to be published") {
                while await broker.readyMessages(broker.topology.workQueue("wf")).count < count { try await Task.sleep(for: .milliseconds(20)) }
            }
            store.delayOutboxReads(.zero)
            #expect(store.deletionsFailed > 0, "no deletion failed: the test did not test that")
            #expect(try await sqlite.unsentOutbox(limit: count).count == count)
            store.failDeletions(0)
            try await within(60, "the published rows to be deleted") {
                while try await !sqlite.unsentOutbox(limit: 1).isEmpty { try await Task.sleep(for: .milliseconds(20)) }
            }
            // Each once: rows whose deletion failed were not published again.
            let ids = await broker.readyMessages(broker.topology.workQueue("wf")).compactMap { $0.properties.messageId }
            #expect(ids.count == count && Set(ids).count == count)
        }
    }
}
