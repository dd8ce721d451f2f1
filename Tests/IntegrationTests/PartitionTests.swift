import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SluiceCoordinator
import SluiceAPI
import SluiceCore
import SluiceRabbitMQ
import SluiceSpawn
import SluiceTesting
import SluiceWorkflow
import Testing

/// Several active coordinators on one PostgreSQL store, sharing its partitions.
@Suite("Coordinators sharing a PostgreSQL store's partitions", .serialized)
struct PartitionTests {
    /// A run that starts `pipeline` as a sub-workflow: its child is (mostly)
    /// in another partition, so the child's start, end and the parent's
    /// next step cross partitions.
    static let parent = """
        name: parent
        steps:
          - id: child
            workflow: { name: pipeline, input: { items: "${input.items}" } }
          - id: after
            after: [child]
            task: sluice.echo
            arguments: { got: "${steps.child.output}" }
        """

    /// The partitions a coordinator leads (from /healthz), nil if it does not answer.
    static func led(_ c: CoordinatorProcess) async -> [Int]? {
        guard let (status, body) = try? await CoordinatorProcess.request("GET", c.api + "/healthz"), status == 200,
              case .array(let items)? = body["partitions"] else { return nil }
        return items.compactMap { if case .number(let n) = $0 { return Int(n) } else { return nil } }
    }

    /// Waits until `condition` holds of the coordinators' partitions.
    static func waitForPartitions(_ coordinators: [CoordinatorProcess], _ what: String, seconds: Double = 60,
                                  _ condition: ([[Int]]) -> Bool) async throws -> [[Int]] {
        let deadline = TestTime.deadline(seconds)
        var last: [[Int]] = []
        while ContinuousClock.now < deadline {
            var all: [[Int]] = []
            var answered = true
            for c in coordinators {
                if let led = await led(c) { all.append(led) } else { answered = false }
                if let exited = SluiceBinary.exited(c.process, "the coordinator at \(c.api)") { throw exited }
            }
            last = all
            if answered && condition(all) { return all }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TimedOut(what: "\(what) (partitions led: \(last))", seconds: TestTime.scaled(seconds))
    }

    /// Every partition led by exactly one of them.
    static func covered(_ all: [[Int]], count: Int = 16) -> Bool {
        all.flatMap { $0 }.sorted() == Array(0..<count)
    }

    func startRuns(_ api: String, pipelines: Int, parents: Int, width: Int) async throws -> [(id: String, workflow: String, first: Int)] {
        for definition in [CoordinatorProcessTests.pipeline, Self.parent] {
            _ = try await CoordinatorClient(base: URL(string: api)!, timeout: TestTime.scaled(30)).registerWorkflow(yaml: definition)
        }
        var runs: [(String, String, Int)] = []
        for i in 0..<(pipelines + parents) {
            let workflow = i < pipelines ? "pipeline" : "parent"
            let input = JSONValue.object(["items": .array((0..<width).map { .number(Double($0 + i)) })])
            let run = try await CoordinatorClient(base: URL(string: api)!, timeout: TestTime.scaled(30)).startRun(StartRunRequest(workflow: workflow, input: input))
            runs.append((run.runID, workflow, i))
        }
        #expect(runs.count == pipelines + parents)
        return runs
    }

    /// Each run completed with exactly its output, every step succeeded once (first generation).
    func expectExact(_ run: JSONValue, workflow: String, first: Int, width: Int) {
        let items = JSONValue.array((0..<width).map { ["v": .number(Double($0 + first))] })
        let pipelineOutput: JSONValue = ["all": items]
        let steps = workflow == "pipeline" ? ["fetch", "each", "total"] : ["child", "after"]
        for step in steps {
            #expect(run["steps"]?[step]?["generation"] == 0, "\(workflow) \(first) \(step)")
            #expect(run["steps"]?[step]?["status"] == "succeeded", "\(workflow) \(first) \(step)")
        }
        if workflow == "pipeline" {
            #expect(run["steps"]?["total"]?["output"] == pipelineOutput, "pipeline \(first)")
        } else {
            #expect(run["steps"]?["after"]?["output"] == ["got": ["total": pipelineOutput]], "parent \(first)")
        }
    }

    @Test("three coordinators, 500 runs (maps, joins, sub-workflows across partitions), one SIGKILLed at random ten times: every run completes exactly")
    func killRandomCoordinators() async throws {
        let h = try await TaskHarness.make()
        let store = try await SharedPostgres.createDatabase()
        let extra = ["--partitions", "16"]
        var coordinators = try (0..<3).map { _ in try CoordinatorProcess.start(h, store: store, extra: extra) }
        defer { for c in coordinators { SluiceBinary.stopIfRunning(c.process) } }
        for c in coordinators { try await c.waitUntilHealthy() }
        _ = try await Self.waitForPartitions(coordinators, "three coordinators to share all 16 partitions") { all in
            Self.covered(all) && all.allSatisfy { !$0.isEmpty }
        }
        let worker = try SluiceBinary.start(CoordinatorProcessTests.workerArguments(h))
        defer { SluiceBinary.stopIfRunning(worker) }
        let width = 3
        let runs = try await startRuns(coordinators[0].api, pipelines: 250, parents: 250, width: width)
        for _ in 0..<10 {
            try await Task.sleep(for: .milliseconds(Int.random(in: 1000...3000)))
            let victim = Int.random(in: 0..<coordinators.count)
            kill(coordinators[victim].process.processIdentifier, SIGKILL)
            _ = try await SluiceBinary.exitStatus(of: coordinators[victim].process)
            coordinators[victim] = try CoordinatorProcess.start(h, store: store, port: coordinators[victim].port, extra: extra)
            _ = try await Self.waitForPartitions([coordinators[victim]], "the restarted coordinator to answer") { _ in true }
        }
        for run in runs {
            let done = try await coordinators[run.first % 3].wait(for: run.id, "completed", seconds: 180)
            expectExact(done, workflow: run.workflow, first: run.first, width: width)
        }
        // Every coordinator answers for any run: reads come from the store.
        for c in coordinators { #expect(try await c.run(runs[0].id)?["status"] == "completed") }
        _ = try await Self.waitForPartitions(coordinators, "the restarted coordinators to share the partitions again") { all in
            Self.covered(all) && all.allSatisfy { !$0.isEmpty }
        }
        for c in coordinators { c.process.terminate() }
        for c in coordinators { _ = try await SluiceBinary.exitStatus(of: c.process) }
        await h.broker.close()
    }

    @Test("a coordinator that joins takes partitions over while runs go on; one that stops with SIGTERM hands its partitions over well within a lease TTL")
    func joinAndLeave() async throws {
        let h = try await TaskHarness.make()
        let store = try await SharedPostgres.createDatabase()
        // A long TTL: a hand-over by expiry would take 30 s, one by release a fifth of it.
        let extra = ["--partitions", "16", "--lease-ttl", "30s"]
        let first = try CoordinatorProcess.start(h, store: store, extra: extra)
        defer { SluiceBinary.stopIfRunning(first.process) }
        try await first.waitUntilHealthy()
        _ = try await Self.waitForPartitions([first], "the first coordinator to lead every partition") { Self.covered($0) }
        let worker = try SluiceBinary.start(CoordinatorProcessTests.workerArguments(h))
        defer { SluiceBinary.stopIfRunning(worker) }
        let before = try await startRuns(first.api, pipelines: 30, parents: 30, width: 4)
        let second = try CoordinatorProcess.start(h, store: store, extra: extra)
        defer { SluiceBinary.stopIfRunning(second.process) }
        let shared = try await Self.waitForPartitions([first, second], "the second coordinator to take some partitions over") { all in
            Self.covered(all) && all.allSatisfy { !$0.isEmpty }
        }
        #expect(shared[0].count == 8 && shared[1].count == 8, "an even share: \(shared)")
        // Runs started on the newcomer, and commands for runs the other leads, work too.
        let during = try await startRuns(second.api, pipelines: 20, parents: 20, width: 4)
        for run in before + during {
            let done = try await first.wait(for: run.id, "completed", seconds: 120)
            expectExact(done, workflow: run.workflow, first: run.first, width: 4)
        }
        let secondPID = second.process.processIdentifier
        second.process.terminate()
        _ = try await SluiceBinary.exitStatus(of: second.process)
        // Released at exit, not left to expire (30 s here): no lease the
        // store still counts names the stopped coordinator (`host:pid:...`).
        let leases = try await PostgresWorkflowStore.connect(url: store)
        let left = try await leases.leases(prefix: "coordinator", now: Date())
        try await leases.close()
        #expect(!left.isEmpty && !left.values.contains { $0.contains(":\(secondPID):") }, "released at exit: \(left)")
        _ = try await Self.waitForPartitions([first], "the remaining coordinator to lead every partition again") { Self.covered($0) }
        let after = try await startRuns(first.api, pipelines: 5, parents: 5, width: 2)
        for run in after {
            let done = try await first.wait(for: run.id, "completed", seconds: 120)
            expectExact(done, workflow: run.workflow, first: run.first, width: 2)
        }
        first.process.terminate()
        _ = try await SluiceBinary.exitStatus(of: first.process)
        await h.broker.close()
    }
}
