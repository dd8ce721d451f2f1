import Foundation
import SluiceAMQP
import SluiceCore
import SluiceLocalBroker
import SluiceRabbitMQ
import SluiceSpawn
import SluiceTesting
import SluiceWorkflow
import Testing

/// Real processes on a cluster of their own, all given the three node
/// addresses: a producer enqueuing with confirms (this test), two
/// `sluice worker` processes that record each task they run in a file
/// (`--exec`), and a `sluice coordinator` running workflows.
extension ClusterTests {
    static func workerArguments(_ cluster: PrivateCluster, prefix: String, script: String, metricsPort: Int) -> [String] {
        ["worker", "--url", cluster.url(), "--prefix", prefix, "--queue", "load", "--queue", "wf", "--concurrency", "8",
         "--exec", script, "--metrics", "127.0.0.1:\(metricsPort)", "--log-level", "info"]
    }

    @Test("the node the producer and workers are on is killed, then one they are not on: no confirmed task is lost, every run completes, every process reconnects")
    func nodesKilledUnderLoad() async throws {
        let cluster = PrivateCluster.unique("kill-load", plugins: "rabbitmq_management")
        try await cluster.start()
        do {
            try await killNodes(cluster)
        } catch {
            try? await cluster.destroy()
            throw error
        }
        try await cluster.destroy()
    }

    @Test("a rolling restart of the three nodes, one at a time, under load loses no confirmed task")
    func rollingRestartUnderLoad() async throws {
        let cluster = PrivateCluster.unique("rolling")
        try await cluster.start()
        do {
            try await rollingRestart(cluster)
        } catch {
            try? await cluster.destroy()
            throw error
        }
        try await cluster.destroy()
    }

    private func killNodes(_ cluster: PrivateCluster) async throws {
        let h = try await TaskHarness.make(url: cluster.url())
        let log = RunLog()
        defer { log.remove() }
        let prefix = h.topology.prefix
        let metrics = [CoordinatorProcess.freePort(), CoordinatorProcess.freePort()]
        let metricsURL = metrics.map { "http://127.0.0.1:\($0)/metrics" }
        func startWorker(_ i: Int) throws -> ChildProcess {
            try SluiceBinary.start(Self.workerArguments(cluster, prefix: prefix, script: log.script(worker: "w\(i + 1)"), metricsPort: metrics[i]))
        }

        // Node 1 is down when the processes start: each starts on another node.
        try await cluster.kill(node: 1)
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: store)
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        var workers = try [startWorker(0), startWorker(1)]
        defer { for worker in workers { SluiceBinary.stopIfRunning(worker) } }
        var nodes: [Int] = []
        for i in 0..<2 { nodes.append(try await waitForNode(cluster, metricsURL: metricsURL[i], "worker \(i + 1)", process: workers[i])) }
        try await coordinator.waitUntilHealthy()
        var coordinatorNode = try await waitForNode(cluster, metricsURL: coordinator.api + "/metrics", "the coordinator", process: coordinator.process)
        #expect(!nodes.contains(1) && coordinatorNode != 1, "node 1 is down, yet a process reports it: workers \(nodes), coordinator \(coordinatorNode)")
        try await cluster.restart(node: 1)

        // The producer and both workers on one node (each picks a node at
        // random: worker 2 and the producer start again until they share
        // worker 1's; (2/3)^40 is the odds of 40 misses in a row).
        let shared = nodes[0]
        var attempts = 0
        while nodes[1] != shared {
            attempts += 1
            try #require(attempts <= 40, "worker 2 never landed on node \(shared)")
            let misplaced = workers[1]
            misplaced.terminate()
            _ = try await within(30, "worker 2 to stop") { try await SluiceBinary.exitStatus(of: misplaced) }
            workers[1] = try startWorker(1)
            nodes[1] = try await waitForNode(cluster, metricsURL: metricsURL[1], "worker 2", process: workers[1])
        }
        let url = try AMQPURL(cluster.url())
        var candidate = try await RabbitMQBroker.connect(url: url, topology: h.topology, connectionName: "load producer")
        attempts = 0
        while nodeNumber(cluster, candidate.connection) != shared {
            attempts += 1
            try #require(attempts <= 60, "the producer never landed on node \(shared)")
            await candidate.close()
            candidate = try await RabbitMQBroker.connect(url: url, topology: h.topology, connectionName: "load producer")
        }
        let producerBroker = candidate
        let producer = LoadProducer(broker: producerBroker)
        producer.start(name: "cluster.job", queue: "load")

        let register = try await CoordinatorProcess.request("POST", coordinator.api + "/v1/workflows",
                                                            body: Array(CoordinatorProcessTests.pipeline.utf8), contentType: "application/yaml")
        #expect(register.status == 201, "\(register.body)")
        var runs: [String] = []
        /// Starts five runs; a start that fails (the coordinator between
        /// nodes) is sent again with the same idempotency key.
        func startRuns(_ phase: String) async throws {
            for i in 0..<5 {
                let body = JSONValue.object(["workflow": "pipeline", "input": ["items": [.number(Double(i)), 1, 2]],
                                             "idempotencyKey": .string("\(phase)-\(i)")])
                let id = try await within(60, "the coordinator to start a run (\(phase))") {
                    while true {
                        if let started = try? await CoordinatorProcess.request("POST", coordinator.api + "/v1/runs", body: body.jsonBytes),
                           case .string(let id)? = started.body["runID"] { return id }
                        try await Task.sleep(for: .milliseconds(200))
                    }
                }
                runs.append(id)
            }
        }
        try await startRuns("before")
        for w in ["w1", "w2"] { try await log.waitForProgress("before a node is killed", worker: w, more: 20, processes: workers) }

        // The shared node dies: everyone moves to another node by themselves.
        try await cluster.kill(node: shared)
        for i in 0..<2 {
            nodes[i] = try await waitForNode(cluster, metricsURL: metricsURL[i], "worker \(i + 1)", process: workers[i]) { $0 != shared }
        }
        if coordinatorNode == shared {
            coordinatorNode = try await waitForNode(cluster, metricsURL: coordinator.api + "/metrics", "the coordinator",
                                                    process: coordinator.process) { $0 != shared }
        }
        let confirmedAtKill = producer.confirmed.count
        do {
            try await within(120, "the producer to reconnect and have tasks confirmed again") {
                while nodeNumber(cluster, producerBroker.connection) == shared || producer.confirmed.count < confirmedAtKill + 50 {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
        } catch let error as TimedOut {
            let queues = (try? await cluster.ctl(node: shared % 3 + 1, "-q", "list_queues", "name", "leader", "online")) ?? "?"
            throw TimedOut(what: error.what + " (producer on node \(nodeNumber(cluster, producerBroker.connection).map(String.init) ?? "none"), "
                               + "\(confirmedAtKill) confirmed at the kill; now \(producer.summary); queues:\n\(queues))", seconds: error.seconds)
        }
        for w in ["w1", "w2"] { try await log.waitForProgress("after node \(shared) was killed", worker: w, more: 20, processes: workers) }
        // `sluice queues` sees it through a live node's management API (the
        // dead node first in its list): the work queue has 2 of 3 members online.
        let listURL = cluster.url(nodes: [shared] + [1, 2, 3].filter { $0 != shared })
        let seen = try await within(90, "sluice queues to report the work queue under-replicated") {
            while true {
                let (status, output) = try await SluiceBinary.run(["queues", "--json", "--url", listURL, "--prefix", prefix])
                let json = output.firstIndex(of: "{").map { String(output[$0...]) } ?? ""
                if status == 0, let overview = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
                   let load = (overview["queues"] as? [[String: Any]])?.first(where: { $0["queue"] as? String == "load" }),
                   load["online"] as? Int == 2, load["members"] as? Int == 3 {
                    return load["underReplicated"] as? Bool
                }
                try await Task.sleep(for: .milliseconds(500))
            }
        }
        #expect(seen == true)
        try await startRuns("killed")
        try await cluster.restart(node: shared)

        // Then a node none of them is on (the cluster keeps a majority:
        // with two of three members down a quorum queue stops, by design).
        let occupied: Set<Int?> = [nodeNumber(cluster, producerBroker.connection), nodes[0], nodes[1]]
        let other = [1, 2, 3].first { $0 != shared && !occupied.contains($0) } ?? shared
        try await cluster.kill(node: other)
        if coordinatorNode == other {
            coordinatorNode = try await waitForNode(cluster, metricsURL: coordinator.api + "/metrics", "the coordinator",
                                                    process: coordinator.process) { $0 != other }
        }
        for w in ["w1", "w2"] { try await log.waitForProgress("with node \(other) down", worker: w, more: 20, processes: workers) }
        try await startRuns("other")
        try await cluster.restart(node: other)
        for w in ["w1", "w2"] { try await log.waitForProgress("after both nodes restarted", worker: w, more: 20, processes: workers) }
        try await startRuns("after")

        await producer.stop()
        let report = try await waitForEveryConfirmedTask(producer, log, processes: workers)
        print("cluster test (nodes \(shared) then \(other) killed): \(report)")
        for (i, id) in runs.enumerated() {
            let run = try await coordinator.wait(for: id, "completed", seconds: 180)
            let items: [JSONValue] = [.number(Double(i % 5)), 1, 2]
            #expect(run["steps"]?["total"]?["output"] == ["all": .array(items.map { ["v": $0] })], "run \(i)")
        }
        #expect(Set(runs).count == 20)

        // Nobody was restarted by the test after the kills: each process
        // reconnected by itself and still runs; each stops cleanly.
        for (i, worker) in workers.enumerated() {
            #expect(worker.isRunning, "worker \(i + 1) ended: \(SluiceBinary.logTail(of: worker))")
            worker.terminate()
            #expect(try await within(60, "worker \(i + 1) to stop") { try await SluiceBinary.exitStatus(of: worker) } == 0)
        }
        coordinator.process.terminate()
        #expect(try await within(60, "the coordinator to stop") { try await SluiceBinary.exitStatus(of: coordinator.process) } == 0)
        await producerBroker.close()
        await h.broker.close()
    }

    private func rollingRestart(_ cluster: PrivateCluster) async throws {
        let h = try await TaskHarness.make(url: cluster.url())
        let log = RunLog()
        defer { log.remove() }
        let workers = try (0..<2).map {
            try SluiceBinary.start(Self.workerArguments(cluster, prefix: h.topology.prefix, script: log.script(worker: "w\($0 + 1)"),
                                                        metricsPort: CoordinatorProcess.freePort()))
        }
        defer { for worker in workers { SluiceBinary.stopIfRunning(worker) } }
        let producer = LoadProducer(broker: h.broker)
        producer.start(name: "cluster.job", queue: "load")
        for w in ["w1", "w2"] { try await log.waitForProgress("before the restarts", worker: w, more: 20, processes: workers) }

        // What an operator does: restart one node (a clean stop), wait until
        // it is back and every queue has all its members online, then the next.
        for node in 1...3 {
            try await cluster.restart(node: node)
            try await waitUntilFullyReplicated(cluster, prefix: h.topology.prefix, through: node)
            try await log.waitForProgress("after node \(node) restarted", more: 40, processes: workers)
        }
        for w in ["w1", "w2"] { try await log.waitForProgress("after the rolling restart", worker: w, more: 20, processes: workers) }

        await producer.stop()
        let report = try await waitForEveryConfirmedTask(producer, log, processes: workers)
        print("cluster test (rolling restart): \(report)")
        for (i, worker) in workers.enumerated() {
            #expect(worker.isRunning, "worker \(i + 1) ended: \(SluiceBinary.logTail(of: worker))")
            worker.terminate()
            #expect(try await within(60, "worker \(i + 1) to stop") { try await SluiceBinary.exitStatus(of: worker) } == 0)
        }
        await h.broker.close()
    }

    /// Waits until every task the broker confirmed has run (the loss this
    /// test forbids); returns a line with the counts, duplicates included
    /// (at-least-once: a task whose ack was lost with a node runs again).
    private func waitForEveryConfirmedTask(_ producer: LoadProducer, _ log: RunLog, processes: [ChildProcess]) async throws -> String {
        let confirmed = producer.confirmed
        #expect(confirmed.count >= 200, "the load was too light to show anything: \(confirmed.count) tasks")
        var missing: Set<String> = confirmed
        do {
            try await within(180, "every confirmed task to run") {
                while true {
                    let ran = Set(log.entries().map { String($0.id) })
                    if confirmed.isSubset(of: ran) { return }
                    for p in processes { if let exited = SluiceBinary.exited(p, "a worker") { throw exited } }
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
        } catch let error as TimedOut {
            missing = confirmed.subtracting(log.entries().map { String($0.id) })
            Issue.record("\(missing.count) of \(confirmed.count) confirmed tasks never ran (\(error)); e.g. \(missing.prefix(5).sorted())")
            throw error
        }
        missing = []
        let entries = log.entries().filter { confirmed.contains(String($0.id)) }
        let duplicates = entries.count - confirmed.count
        #expect(missing.isEmpty)
        return "\(confirmed.count) tasks confirmed, 0 lost, \(duplicates) ran twice or more, \(producer.failures) publishes failed "
            + "(\(producer.failureKinds)) and were sent again"
    }
}
