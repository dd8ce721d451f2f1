import Foundation
import SluiceAPI
import SluiceCore
import SluiceRabbitMQ
import SluiceTesting
import SluiceWorkflow
import Testing

@Suite("Signals: a run waits for a signal from outside")
struct SignalTests {
    static let definition = """
        name: approval
        steps:
          - id: first
            signal: one
          - id: approval
            after: [first]
            signal: { name: approved, timeout: 10m }
          - id: charge
            after: [approval]
            task: sluice.echo
            arguments: { by: "${steps.approval.output.by}" }
        """

    @Test("a signal sent before its step waits is kept across a coordinator SIGKILL; a waiting step takes one sent with the CLI; a duplicate applies once; a finished run refuses signals",
          arguments: StoreKind.allCases)
    func keptAcrossRestart(storeKind: StoreKind) async throws {
        let h = try await TaskHarness.make()
        let store = try await storeKind.coordinatorStore()
        var coordinator = try CoordinatorProcess.start(h, store: store)
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        let worker = try SluiceBinary.start(CoordinatorProcessTests.workerArguments(h))
        defer { SluiceBinary.stopIfRunning(worker) }
        try await coordinator.waitUntilHealthy()
        #expect(try await coordinator.client.registerWorkflow(yaml: Self.definition).name == "approval")
        let runID = try await coordinator.client.startRun(StartRunRequest(workflow: "approval")).runID

        // A name no step waits for, and data over 64 KiB, are refused.
        let unknown = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/runs/\(runID)/signals/nobody")
        #expect(unknown.status == 400, "\(unknown.body)")
        let big = JSONValue.object(["data": .string(String(repeating: "x", count: 70_000))])
        let tooLarge = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/runs/\(runID)/signals/one", body: big.jsonBytes)
        #expect(tooLarge.status == 413, "\(tooLarge.body)")

        // `approved` before any step waits for it (`first` waits for `one`): kept, once however often it is sent.
        let url = coordinator.api + "/v1/runs/\(runID)/signals/approved"
        let early = try await CoordinatorProcess.request("POST", url, body: Array(#"{"data": {"by": "ana"}, "id": "s1"}"#.utf8))
        #expect(early.status == 200, "\(early.body)")
        #expect(early.body["kept"] == .bool(true))
        let again = try await CoordinatorProcess.request("POST", url, body: Array(#"{"data": {"by": "eve"}, "id": "s1"}"#.utf8))
        #expect(again.status == 200, "\(again.body)")
        #expect(again.body["kept"] == nil, "a duplicate is answered, not applied")
        let kept = try await coordinator.run(runID)
        let keptCount: Int = if case .array(let list)? = kept?["signals"] { list.count } else { 0 }
        #expect(keptCount == 1, "\(kept?.jsonText ?? "")")

        // The coordinator dies; the kept signal is in the store.
        kill(coordinator.process.processIdentifier, SIGKILL)
        _ = try await SluiceBinary.exitStatus(of: coordinator.process)
        coordinator = try CoordinatorProcess.start(h, store: store)
        try await coordinator.waitUntilHealthy()
        // Leading every partition (PostgreSQL's 16 are taken over one by one
        // as the dead coordinator's leases expire), so the signal is applied
        // here, not forwarded.
        let deadline = TestTime.deadline(60)
        while true {
            let health = try await coordinator.client.health()
            if health.partitionCount > 0, health.partitions.count == health.partitionCount { break }
            guard ContinuousClock.now < deadline else { throw TimedOut(what: "the coordinator to lead every partition: \(health)", seconds: TestTime.scaled(60)) }
            try await Task.sleep(for: .milliseconds(100))
        }

        // `one` through the CLI: `first` is waiting for it and takes it; `approval` then takes the kept `approved`.
        let sent = try await SluiceBinary.run(["workflow", "signal", runID, "one", "--data", #"{"n": 1}"#, "--id", "s2", "--json",
                                               "--api", coordinator.api])
        #expect(sent.status == 0, "\(sent.output)")
        #expect((try? JSONValue.parse(Array(sent.output.utf8)))?["kept"] == .bool(false), "\(sent.output)")
        let done = try await coordinator.wait(for: runID, "completed")
        #expect(done["steps"]?["first"]?["output"] == ["n": 1])
        #expect(done["steps"]?["approval"]?["output"] == ["by": "ana"], "the first copy's data, not the duplicate's")
        #expect(done["steps"]?["charge"]?["output"] == ["by": "ana"])
        #expect(done["signals"] == nil, "taken")

        let late = try await SluiceBinary.run(["workflow", "signal", runID, "approved", "--api", coordinator.api])
        #expect(late.status != 0)
        #expect(late.output.contains("has ended"), "\(late.output)")
        let bad = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/runs/\(runID)/signals/no%20way")
        #expect(bad.status == 400)
        let missing = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/runs/nope/signals/one")
        #expect(missing.status == 404)
        kill(coordinator.process.processIdentifier, SIGTERM)
        _ = try await SluiceBinary.exitStatus(of: coordinator.process)
        await h.broker.close()
    }
}
