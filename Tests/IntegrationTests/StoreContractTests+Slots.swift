import Foundation
import SluiceCoordinator
import SluiceWorkflow
import Testing

extension StoreContractTests {
    func waitingRun(_ id: String, key: String, limit: Int, workflow: String = "orders") -> RunChange {
        var run = newRun(id, workflow: workflow, status: .pending, createdAt: t0)
        run.slot = RunSlot(key: key, limit: limit)
        var change = RunChange(run: run, isNew: true)
        change.slot = .wait
        return change
    }

    /// The runs the store started (their `start` messages in the outbox), in outbox order.
    func started(_ store: any WorkflowStore) async throws -> [String] {
        try await store.unsentOutbox(limit: 1000).compactMap { entry in
            guard case .message(let message) = entry.item, case .start = message.event else { return nil }
            return message.runID
        }
    }

    @Test("run concurrency: runs wait in line per key, start in arrival order as slots free up, across reopening", arguments: StoreKind.allCases)
    func slots(kind: StoreKind) async throws {
        let (store, reopen) = try await kind.make()
        // Three of key acme (limit 2) and one of key zeta, in one commit: acme's first two and zeta's start.
        let ids = try await store.commit([waitingRun("a1", key: "acme", limit: 2), waitingRun("a2", key: "acme", limit: 2),
                                          waitingRun("a3", key: "acme", limit: 2), waitingRun("z1", key: "zeta", limit: 2)])
        #expect(ids.isEmpty, "the start messages are the store's rows, not the caller's")
        #expect(Set(try await started(store)) == ["a1", "a2", "z1"])
        // Another workflow's runs with the same key are a line of their own.
        try await store.commit([waitingRun("b1", key: "acme", limit: 1, workflow: "billing")])
        #expect(try await started(store).contains("b1"))

        // a1 finishes: a3 gets its slot. A run that is still in line and is cancelled leaves the line.
        var a1 = try #require(try await store.run(id: "a1"))
        a1.status = .completed
        var done = RunChange(run: a1)
        done.slot = .release
        let taskIDs = try await store.commit([done, waitingRun("a4", key: "acme", limit: 2), waitingRun("a5", key: "acme", limit: 2)])
        #expect(taskIDs.isEmpty)
        let afterFirst = try await started(store)
        #expect(afterFirst.contains("a3"))
        #expect(!afterFirst.contains("a4") && !afterFirst.contains("a5"), "a2 and a3 hold both slots")
        var a4 = try #require(try await store.run(id: "a4"))
        a4.status = .cancelled
        var cancelled = RunChange(run: a4)
        cancelled.slot = .release
        try await store.commit([cancelled])
        #expect(!(try await started(store)).contains("a5"), "a cancelled run in line frees no slot")
        try await store.close()

        // After a reopen, the line is where it was: a2 finishing starts a5 (a4 left the line).
        let again = try await reopen()
        var a2 = try #require(try await again.run(id: "a2"))
        a2.status = .failed
        var failed = RunChange(run: a2)
        failed.slot = .release
        try await again.commit([failed])
        #expect(try await started(again).contains("a5"))
        // A failed run retried by hand holds a slot again at once, even past the limit; a6 then waits for two to finish.
        a2.status = .running
        var retried = RunChange(run: a2)
        retried.slot = .hold
        try await again.commit([retried, waitingRun("a6", key: "acme", limit: 2)])
        #expect(!(try await started(again)).contains("a6"))
        try await again.close()
    }

    @Test("run concurrency: concurrent commits never give out more slots than the limit", arguments: StoreKind.allCases)
    func slotRace(kind: StoreKind) async throws {
        let (store, _) = try await kind.make()
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Eight at once: enough to race for three slots; 24 queued on one key's lock
            // outlasted the store's 15 s call limit once on a loaded CI machine.
            for i in 0..<8 {
                group.addTask { try await store.commit([self.waitingRun("r\(i)", key: "race", limit: 3)]) }
            }
            try await group.waitForAll()
        }
        #expect(try await started(store).count == 3)
        try await store.close()
    }
}
