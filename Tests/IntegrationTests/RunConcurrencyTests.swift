import Foundation
import SluiceAPI
import SluiceCore
import SluiceRabbitMQ
import SluiceTesting
import SluiceWorkflow
import Testing

@Suite("Run concurrency per key with coordinator processes and both stores")
struct RunConcurrencyTests {
    /// One active run per customer; each waits for a signal `go`, then runs a task.
    static let definition = """
        name: sync
        concurrency: { limit: 1, key: "${input.customer}" }
        steps:
          - id: hold
            signal: go
          - id: work
            after: [hold]
            task: sluice.echo
            arguments: { customer: "${input.customer}" }
        """

    static func start(_ c: CoordinatorProcess, customer: String, limit: Int = 1) async throws -> String {
        let run = try await c.client.startRun(StartRunRequest(workflow: "sync", input: ["customer": .string(customer)]))
        // Started by a message once the store gave it a slot: pending, or already running if that was quick.
        #expect(run.status == .pending || run.status == .running, "\(run.status)")
        #expect(run.slot == RunSlot(key: customer, limit: limit))
        return run.runID
    }

    static func signal(_ c: CoordinatorProcess, _ runID: String) async throws {
        _ = try await c.client.signal(run: runID, name: "go", signalID: "go")
    }

    static func status(_ c: CoordinatorProcess, _ id: String) async throws -> String {
        try await c.client.run(id).status.rawValue
    }

    @Test("limit 1 per customer: others wait pending and start in arrival order as runs finish; a pending run can be cancelled; the line survives a coordinator SIGKILL",
          arguments: StoreKind.allCases)
    func perKey(storeKind: StoreKind) async throws {
        let h = try await TaskHarness.make()
        let store = try await storeKind.coordinatorStore()
        var coordinator = try CoordinatorProcess.start(h, store: store)
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        let worker = try SluiceBinary.start(CoordinatorProcessTests.workerArguments(h))
        defer { SluiceBinary.stopIfRunning(worker) }
        try await coordinator.waitUntilHealthy()
        #expect(try await coordinator.client.registerWorkflow(yaml: Self.definition).name == "sync")
        do {
            _ = try await coordinator.client.startRun(StartRunRequest(workflow: "sync"))
            Issue.record("an input without the key was accepted")
        } catch let failure as CoordinatorClient.Failure {
            #expect(failure.kind == .refused(status: 400, code: "bad_request"), "\(failure)")
            #expect(failure.message.contains("concurrency key"), "\(failure)")
        }

        var acme: [String] = []
        for _ in 0..<4 { acme.append(try await Self.start(coordinator, customer: "acme")) }
        let beta = try await Self.start(coordinator, customer: "beta")
        _ = try await coordinator.wait(for: acme[0], "running")
        _ = try await coordinator.wait(for: beta, "running")
        for id in acme.dropFirst() { #expect(try await Self.status(coordinator, id) == "pending", "\(id) waits for acme's slot") }
        let shown = try await SluiceBinary.run(["workflow", "status", acme[1], "--api", coordinator.api])
        #expect(shown.output.contains("waiting for a concurrency slot: at most 1 active run of sync with key 'acme'"), "\(shown.output)")

        // A pending run is cancelled: it leaves the line.
        let cancelled = try await SluiceBinary.run(["workflow", "cancel", acme[1], "--api", coordinator.api])
        #expect(cancelled.status == 0, "\(cancelled.output)")
        _ = try await coordinator.wait(for: acme[1], "cancelled")

        // The coordinator dies; the line is in the store.
        kill(coordinator.process.processIdentifier, SIGKILL)
        _ = try await SluiceBinary.exitStatus(of: coordinator.process)
        coordinator = try CoordinatorProcess.start(h, store: store)
        try await coordinator.waitUntilHealthy()
        #expect(try await Self.status(coordinator, acme[2]) == "pending")

        // Each finishing run lets the next in line start: acme[2], then acme[3].
        try await Self.signal(coordinator, acme[0])
        let first = try await coordinator.wait(for: acme[0], "completed")
        let second = try await coordinator.wait(for: acme[2], "running")
        #expect(try await Self.status(coordinator, acme[3]) == "pending", "acme[2] holds the slot")
        let finished = try #require(APICoding.parseDate(first["finishedAt"]?.stringValue ?? ""), "\(first.jsonText)")
        let started = try #require(APICoding.parseDate(second["startedAt"]?.stringValue ?? ""), "\(second.jsonText)")
        #expect(started >= finished, "acme[2] started after acme[0] finished")
        try await Self.signal(coordinator, acme[2])
        _ = try await coordinator.wait(for: acme[2], "completed")
        try await Self.signal(coordinator, acme[3])
        try await Self.signal(coordinator, beta)
        _ = try await coordinator.wait(for: acme[3], "completed")
        _ = try await coordinator.wait(for: beta, "completed")
        kill(coordinator.process.processIdentifier, SIGTERM)
        _ = try await SluiceBinary.exitStatus(of: coordinator.process)
        await h.broker.close()
    }

    @Test("two active coordinators on 16 partitions: runs of one key started through both never run more than the limit at once")
    func acrossCoordinators() async throws {
        let h = try await TaskHarness.make()
        let store = try await SharedPostgres.createDatabase()
        let extra = ["--partitions", "16"]
        let coordinators = try (0..<2).map { _ in try CoordinatorProcess.start(h, store: store, extra: extra) }
        defer { for c in coordinators { SluiceBinary.stopIfRunning(c.process) } }
        for c in coordinators { try await c.waitUntilHealthy() }
        _ = try await PartitionTests.waitForPartitions(coordinators, "two coordinators to share all 16 partitions") { all in
            PartitionTests.covered(all) && all.allSatisfy { !$0.isEmpty }
        }
        let worker = try SluiceBinary.start(CoordinatorProcessTests.workerArguments(h))
        defer { SluiceBinary.stopIfRunning(worker) }
        let definition = Self.definition.replacingOccurrences(of: "limit: 1", with: "limit: 2")
        #expect(try await coordinators[0].client.registerWorkflow(yaml: definition).version == 1)
        // Twelve runs of one key, started through both coordinators at once (their runs land in both's partitions).
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<12 { group.addTask { try await Self.start(coordinators[i % 2], customer: "acme", limit: 2) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        var finished: Set<String> = []
        while finished.count < ids.count {
            // Wait until two run (or all that are left), check no third does, finish the running ones.
            let deadline = TestTime.deadline(60)
            var running: [String] = []
            while true {
                running = []
                for id in ids where !finished.contains(id) {
                    if try await Self.status(coordinators[0], id) == "running" { running.append(id) }
                }
                #expect(running.count <= 2, "at most 2 runs of key acme at once: \(running)")
                if running.count == min(2, ids.count - finished.count) { break }
                guard ContinuousClock.now < deadline else {
                    // (It timed out once, on a machine at a load average of 70: what the coordinators said goes along.)
                    var statuses: [String: Int] = [:]
                    for id in ids where !finished.contains(id) { statuses[(try? await Self.status(coordinators[0], id)) ?? "?", default: 0] += 1 }
                    let logs = coordinators.map { "\($0.api):\n\(SluiceBinary.logTail(of: $0.process, lines: 15))" }.joined(separator: "\n")
                    throw TimedOut(what: "two runs of acme to run (running: \(running), finished \(finished.count), the rest: \(statuses));"
                                   + " the coordinators' logs end:\n\(logs)", seconds: TestTime.scaled(60))
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            for id in running { try await Self.signal(coordinators[0], id) }
            for id in running {
                _ = try await coordinators[0].wait(for: id, "completed")
                finished.insert(id)
            }
        }
        for c in coordinators { c.process.terminate() }
        for c in coordinators { _ = try await SluiceBinary.exitStatus(of: c.process) }
        await h.broker.close()
    }
}

private extension JSONValue {
    var stringValue: String? { if case .string(let s) = self { s } else { nil } }
}
