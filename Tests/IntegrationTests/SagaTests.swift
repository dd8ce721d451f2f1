import Foundation
import SluiceAPI
import SluiceCore
import SluiceRabbitMQ
import SluiceTesting
import SluiceWorkflow
import Testing

@Suite("Compensation (sagas) with a coordinator process, real workers and both stores")
struct SagaTests {
    static let definition = """
        name: trip
        steps:
          - id: flight
            task: flight.reserve
            compensate: { task: flight.cancel, arguments: { reservation: "${output.id}" } }
          - id: hotel
            after: [flight]
            task: hotel.reserve
            compensate: { task: hotel.cancel, arguments: { reservation: "${output.id}" } }
          - id: charge
            after: [hotel]
            task: card.charge
            maxAttempts: 1
            compensate: { task: card.refund }
          - id: confirm
            after: [charge]
            task: mail.confirm
        """

    /// A worker command (`sluice worker --exec`) that logs each task it runs
    /// (name and id, one line each), fails `card.charge`, and holds
    /// `hotel.cancel` until the file `gate` exists.
    static func script(log: String, gate: String) -> String {
        """
        echo "$SLUICE_TASK_NAME $SLUICE_TASK_ID" >> '\(log)'
        case "$SLUICE_TASK_NAME" in
          card.charge) echo "card declined" >&2; exit 3 ;;
          hotel.cancel) while [ ! -e '\(gate)' ]; do sleep 0.05; done ;;
        esac
        echo "{\\"id\\": \\"$SLUICE_TASK_ID\\"}"
        """
    }

    static func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    @Test("a four-step booking whose charge fails: the hotel, then the flight are compensated exactly once, with the coordinator SIGKILLed while the hotel's compensation runs",
          arguments: StoreKind.allCases)
    func booking(storeKind: StoreKind) async throws {
        let h = try await TaskHarness.make()
        let store = try await storeKind.coordinatorStore()
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-saga-\(UUID().uuidString).log").path
        let gate = log + ".gate"
        defer {
            try? FileManager.default.removeItem(atPath: log)
            try? FileManager.default.removeItem(atPath: gate)
        }
        var coordinator = try CoordinatorProcess.start(h, store: store)
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        let worker = try SluiceBinary.start(CoordinatorProcessTests.workerArguments(h) + ["--exec", Self.script(log: log, gate: gate)])
        defer { SluiceBinary.stopIfRunning(worker) }
        try await coordinator.waitUntilHealthy()
        #expect(try await coordinator.client.registerWorkflow(yaml: Self.definition).name == "trip")
        let runID = try await coordinator.client.startRun(StartRunRequest(workflow: "trip")).runID

        // The charge fails; the hotel's compensation starts and waits at the gate.
        let compensating = try await coordinator.wait(for: runID, "compensating")
        #expect(compensating["compensation"]?["cause"] == "failed")
        let deadline = TestTime.deadline(60)
        while !Self.lines(log).contains(where: { $0.hasPrefix("hotel.cancel ") }) {
            guard ContinuousClock.now < deadline else {
                throw TimedOut(what: "hotel.cancel to start (the worker ran: \(Self.lines(log)))", seconds: TestTime.scaled(60))
            }
            try await Task.sleep(for: .milliseconds(50))
        }

        // Its publication recorded (the outbox is empty: a kill between a
        // task's publication and that record publishes it again, at least
        // once, as for every step task), the coordinator dies in the middle
        // of compensating; another takes over from the store.
        while try await coordinator.client.stats().outboxUnsent > 0 {
            guard ContinuousClock.now < deadline else { throw TimedOut(what: "the outbox to be empty", seconds: TestTime.scaled(60)) }
            try await Task.sleep(for: .milliseconds(50))
        }
        kill(coordinator.process.processIdentifier, SIGKILL)
        _ = try await SluiceBinary.exitStatus(of: coordinator.process)
        coordinator = try CoordinatorProcess.start(h, store: store)
        try await coordinator.waitUntilHealthy()
        let resumed = try await coordinator.run(runID)
        #expect(resumed?["status"] == "compensating", "\(resumed?.jsonText ?? "")")
        #expect(FileManager.default.createFile(atPath: gate, contents: nil))

        let done = try await coordinator.wait(for: runID, "compensated")
        let error: String = if case .string(let e)? = done["error"] { e } else { "" }
        #expect(error.contains("charge"), "\(done.jsonText)")
        #expect(done["compensation"]?["order"] == ["hotel", "flight"])
        #expect(done["steps"]?["hotel"]?["compensation"]?["status"] == "succeeded")
        #expect(done["steps"]?["flight"]?["compensation"]?["status"] == "succeeded")
        #expect(done["steps"]?["charge"]?["compensation"] == nil, "the failed step is not compensated")
        #expect(done["steps"]?["confirm"]?["status"] == "skipped")

        // What the worker ran, in order: each compensation once, the hotel's before the flight's.
        let ran = Self.lines(log).map { String($0.split(separator: " ")[0]) }
        #expect(ran == ["flight.reserve", "hotel.reserve", "card.charge", "hotel.cancel", "flight.cancel"], "\(Self.lines(log))")
        #expect(Self.lines(log).contains("flight.cancel \(runID)/flight/0/~undo"))

        // The CLI shows the compensation.
        let status = try await SluiceBinary.run(["workflow", "status", runID, "--api", coordinator.api])
        #expect(status.status == 0, "\(status.output)")
        #expect(status.output.contains("compensated"), "\(status.output)")
        #expect(status.output.contains("2 of 2 steps compensated"), "\(status.output)")
        let listed = try await SluiceBinary.run(["workflow", "list", "--state", "compensated", "--json", "--api", coordinator.api])
        #expect(listed.output.contains(runID), "\(listed.output)")
        kill(coordinator.process.processIdentifier, SIGTERM)
        _ = try await SluiceBinary.exitStatus(of: coordinator.process)
        await h.broker.close()
    }

    @Test("a run cancelled after its first step: that step is compensated and the run ends compensated (cause cancelled)")
    func cancel() async throws {
        let h = try await TaskHarness.make()
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-saga-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let coordinator = try CoordinatorProcess.start(h, store: store)
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        let definition = """
            name: hold
            steps:
              - id: flight
                task: flight.reserve
                compensate: { task: flight.cancel, arguments: { reservation: "${output.id}" } }
              - id: approval
                after: [flight]
                signal: approved
            """
        let worker = try SluiceBinary.start(CoordinatorProcessTests.workerArguments(h) + ["--exec", Self.script(log: log, gate: "/nonexistent")])
        defer { SluiceBinary.stopIfRunning(worker) }
        try await coordinator.waitUntilHealthy()
        #expect(try await coordinator.client.registerWorkflow(yaml: definition).name == "hold")
        let runID = try await coordinator.client.startRun(StartRunRequest(workflow: "hold")).runID
        let deadline = TestTime.deadline(60)
        while try await coordinator.run(runID)?["steps"]?["approval"]?["status"] != "running" {
            guard ContinuousClock.now < deadline else { throw TimedOut(what: "the run to wait for approval", seconds: TestTime.scaled(60)) }
            try await Task.sleep(for: .milliseconds(100))
        }
        let cancelled = try await SluiceBinary.run(["workflow", "cancel", runID, "--api", coordinator.api])
        #expect(cancelled.status == 0, "\(cancelled.output)")
        let done = try await coordinator.wait(for: runID, "compensated")
        #expect(done["compensation"]?["cause"] == "cancelled")
        #expect(Self.lines(log).map { String($0.split(separator: " ")[0]) } == ["flight.reserve", "flight.cancel"])
        kill(coordinator.process.processIdentifier, SIGTERM)
        _ = try await SluiceBinary.exitStatus(of: coordinator.process)
        await h.broker.close()
    }
}
