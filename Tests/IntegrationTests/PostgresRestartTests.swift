import Foundation
import SluiceRabbitMQ
import SluiceSpawn
import SluiceTesting
import SluiceWorkflow
import Testing

@Suite("PostgreSQL restarted under a running coordinator (own cluster)")
struct PostgresRestartTests {
    @Test("the database goes away: the coordinator stands by instead of exiting; it comes back: the coordinator leads again and every run completes")
    func restart() async throws {
        // A cluster of its own, as this test stops it (scripts/test removes any a crash left).
        let pid = Int(ProcessInfo.processInfo.processIdentifier)
        let port = 27_300 + (pid + 300) % 600  // never the TLS test's port (pid % 600)
        let cluster = PrivatePostgres(name: "restart-\(pid)", port: port)
        try? await cluster.destroy()
        try await cluster.start()
        let h = try await TaskHarness.make()
        let coordinator = try CoordinatorProcess.start(h, store: cluster.url)
        // No worker until the database is gone, so that every run is in progress then.
        var worker: ChildProcess?
        do {
            try await coordinator.waitUntilHealthy(active: true)
            let ids = try await coordinator.startPipelineRuns(10, width: 3)
            for id in ids { #expect(try await coordinator.run(id)?["status"] == "running") }

            // Gone while runs are in progress. After a lease TTL (6 s) without a
            // renewal the coordinator cannot know it still leads: it stands by.
            try await cluster.stop()
            // Step results arrive while the database is away; they wait in the coordinator's queue.
            worker = try SluiceBinary.start(CoordinatorProcessTests.workerArguments(h))
            try await coordinator.waitUntilHealthy(active: false, seconds: 60)
            #expect(coordinator.process.isRunning, "the coordinator waits for the database instead of exiting")

            try await cluster.start()
            try await coordinator.waitUntilHealthy(active: true, seconds: 60)
            for id in ids { _ = try await coordinator.wait(for: id, "completed") }
            // New work goes through as before.
            let after = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/runs",
                                                             body: Array(#"{"workflow": "pipeline", "input": {"items": [42]}}"#.utf8))
            guard case .string(let afterID)? = after.body["runID"] else {
                throw CoordinatorEnded("no run started after the restart: \(after)")
            }
            let done = try await coordinator.wait(for: afterID, "completed")
            #expect(done["steps"]?["total"]?["output"] == ["all": [["v": 42]]], "\(done)")
        } catch {
            if let worker { SluiceBinary.stopIfRunning(worker) }
            SluiceBinary.stopIfRunning(coordinator.process)
            await h.broker.close()
            try? await cluster.destroy()
            throw error
        }
        if let worker { SluiceBinary.stopIfRunning(worker) }
        coordinator.process.terminate()
        #expect(try await within(30, "the coordinator to stop") { try await SluiceBinary.exitStatus(of: coordinator.process) } == 0)
        await h.broker.close()
        try await cluster.destroy()
    }
}
