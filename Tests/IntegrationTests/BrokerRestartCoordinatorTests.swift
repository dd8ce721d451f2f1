import Foundation
import SluiceLocalBroker
import SluiceRabbitMQ
import SluiceSpawn
import SluiceTesting
import SluiceWorkflow
import Testing

@Suite("The broker restarted under a running coordinator (own node)")
struct BrokerRestartCoordinatorTests {
    @Test("the broker restarts while runs are in progress: the coordinator keeps running and every run completes")
    func restart() async throws {
        // A node of its own, as this test stops it.
        let node = PrivateBroker.unique("coord")
        try await node.start()
        let h = try await TaskHarness.make(url: node.amqpURL)
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: store)
        // No worker until the broker is back, so that every run is in progress across the restart.
        var worker: ChildProcess?
        do {
            try await coordinator.waitUntilHealthy(active: true)
            let ids = try await coordinator.startPipelineRuns(10, width: 3)
            for id in ids { #expect(try await coordinator.run(id)?["status"] == "running") }

            try await node.stop()
            try await node.start()
            worker = try SluiceBinary.start(CoordinatorProcessTests.workerArguments(h))
            // `wait(for:)` fails at once if the coordinator process has exited.
            for id in ids { _ = try await coordinator.wait(for: id, "completed") }
            #expect(coordinator.process.isRunning, "the coordinator rode out the broker restart")
            let more = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/runs",
                                                            body: Array(#"{"workflow": "pipeline", "input": {"items": [7]}}"#.utf8))
            guard case .string(let moreID)? = more.body["runID"] else {
                throw CoordinatorEnded("no run started after the restart: \(more)")
            }
            let done = try await coordinator.wait(for: moreID, "completed")
            #expect(done["steps"]?["total"]?["output"] == ["all": [["v": 7]]], "\(done)")
        } catch {
            if let worker { SluiceBinary.stopIfRunning(worker) }
            SluiceBinary.stopIfRunning(coordinator.process)
            await h.broker.close()
            try? await node.destroy()
            throw error
        }
        if let worker { SluiceBinary.stopIfRunning(worker) }
        coordinator.process.terminate()
        #expect(try await within(30, "the coordinator to stop") { try await SluiceBinary.exitStatus(of: coordinator.process) } == 0)
        await h.broker.close()
        try await node.destroy()
    }
}
