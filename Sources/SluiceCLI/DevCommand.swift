import ArgumentParser
import Foundation
import SluiceAMQP
import SluiceCoordinator
import SluiceCore
import SluiceLocalBroker
import SluiceRabbitMQ
import SluiceWire
import SluiceWorkflow
import SluiceAPI
import SluiceWorkerProcess

struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run a local stack and a demo: a private broker, a coordinator on SQLite, a worker, and a demo workflow you can watch.",
        discussion: """
        Starts a private RabbitMQ node (scripts/broker; or uses --url), `sluice coordinator` on \
        a SQLite file and `sluice worker` with the built-in tasks, then registers and starts the \
        demo workflow `sluice-demo`: a fan-out over 8 items with one that is dead-lettered, a step \
        that fails twice and succeeds on its third attempt, and a join; then `sluice-demo-trip`, a \
        saga whose card charge fails, so its hotel and flight bookings are undone by their \
        compensations (hotel first). Their progress shows live; \
        then the stack keeps running for you to explore (sluice top, sluice queues, the management \
        UI) until Ctrl-C, which stops everything this command started. The broker's data stays \
        (scripts/broker destroy removes it).

        With --cluster the broker is a private three-node cluster (scripts/cluster, about 30 s to \
        start) instead of one node: the coordinator and the worker get all three node addresses \
        and every quorum queue three replicas. While it runs, crash a node with \
        `SLUICE_CLUSTER_NAME=dev SLUICE_CLUSTER_PORT=27500 scripts/cluster kill 1` (and bring it \
        back with `... restart 1`), and watch `sluice queues` (ONLINE, LEADER) and the processes \
        reconnect; the summary prints these commands for the ports in use. Data stays \
        (`SLUICE_CLUSTER_NAME=dev SLUICE_CLUSTER_PORT=27500 scripts/cluster destroy` removes it).
        """)

    @Option(help: "Use this broker instead of starting a private one.")
    var url: String?
    @Option(help: "First port of the private broker (AMQP; management is +2).")
    var brokerPort: Int = 27170
    @Flag(help: "Run a private three-node RabbitMQ cluster instead of one node (scripts/cluster).")
    var cluster = false
    @Option(help: "With --cluster: the cluster's base port P (its epmd); node N listens on P+10N (AMQP) and P+10N+2 (management).")
    var clusterPort: Int = 27500
    @Option(help: "Where the coordinator API listens.")
    var http: String = "127.0.0.1:27200"
    @Option(help: "Folder for the SQLite store and the logs.")
    var dataDir: String = ".sluice/dev"
    @Option(help: "Name prefix of Sluice's exchanges and queues.")
    var prefix: String = "sluice"
    @Flag(help: "Stop once the demo run has finished (for scripts and tests).")
    var exitWhenDone = false

    func validate() throws {
        _ = try parseHostPort(http)
        guard (1024...65000).contains(brokerPort), brokerPort != 5672 else { throw ValidationError("--broker-port must be from 1024 to 65000, not 5672") }
        guard (1024...65000).contains(clusterPort), !(clusterPort...(clusterPort + 39)).contains(5672) else {
            throw ValidationError("--cluster-port must be from 1024 to 65000, and its 40 ports must not include 5672")
        }
        if cluster, url != nil { throw ValidationError("--cluster starts a private cluster; it cannot be given with --url") }
        guard Topology.isValidName(prefix) else { throw ValidationError("--prefix must be letters, digits, '-', '_' or '.'") }
    }

    func run() async throws {
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let stack = DevStack(dataDir: dataDir)
        do {
            // Ctrl-C (or SIGTERM) at any point cancels the bring-up; tearDown follows.
            try await untilInterrupted { try await self.bringUp(stack) }
        } catch {
            standardError("dev: \(error)")
            await stack.tearDown()
            throw ExitCode(1)
        }
        await stack.tearDown()
    }

    private func bringUp(_ stack: DevStack) async throws {
        // 1. The broker.
        var brokerURL = url ?? ProcessInfo.processInfo.environment["SLUICE_URL"]
        var managementURL: String?
        var clusterCommands: String?
        if cluster {
            let nodes = PrivateCluster(name: clusterPort == 27500 ? "dev" : "dev-\(clusterPort)", basePort: clusterPort, plugins: "rabbitmq_management")
            guard FileManager.default.isExecutableFile(atPath: PrivateCluster.script.path) else {
                throw CLIError("cannot find scripts/cluster (\(PrivateCluster.script.path)); run from a Sluice checkout or pass --url")
            }
            let status = (try? await nodes.run(["status"])) ?? ""
            if status.components(separatedBy: " running,").count - 1 < 3 {
                step("starting a private three-node RabbitMQ cluster on 127.0.0.1:\((1...3).map { String(nodes.amqpPort($0)) }.joined(separator: ",")) (takes about 30 s)...")
                stack.stopBroker = ("cluster", { try await nodes.stop() })
                try await nodes.start()
            } else {
                step("using the private RabbitMQ cluster already running on 127.0.0.1:\((1...3).map { String(nodes.amqpPort($0)) }.joined(separator: ","))")
            }
            brokerURL = nodes.url()
            managementURL = nodes.managementURL(node: 1)
            let env = "SLUICE_CLUSTER_NAME=\(nodes.name) SLUICE_CLUSTER_PORT=\(nodes.basePort) scripts/cluster"
            clusterCommands = "\(env) kill 1    (then: \(env) restart 1)"

        } else if brokerURL == nil {
            let node = PrivateBroker(name: brokerPort == 27170 ? "dev" : "dev-\(brokerPort)", basePort: brokerPort, plugins: "rabbitmq_management")
            guard FileManager.default.isExecutableFile(atPath: PrivateBroker.script.path) else {
                throw CLIError("cannot find scripts/broker (\(PrivateBroker.script.path)); run from a Sluice checkout or pass --url")
            }
            if (try? await node.run(["running"])) == nil {
                step("starting a private RabbitMQ node on 127.0.0.1:\(brokerPort) (takes about 6 s)...")
                stack.stopBroker = ("node", { try await node.stop() })
                try await node.start()
            } else {
                step("using the private RabbitMQ node already running on 127.0.0.1:\(brokerPort)")
            }
            brokerURL = node.amqpURL
            managementURL = node.managementURL
        }
        guard let brokerURL else { throw CLIError("no broker") }
        let (host, port) = try parseHostPort(http)
        let apiBase = "http://\(host.contains(":") ? "[\(host)]" : host):\(port)"
        guard let apiURL = URL(string: apiBase), apiURL.host != nil else {
            throw ValidationError("--http '\(http)' is not a usable HOST:PORT")
        }
        // The broker URL (with its password) goes in the children's environment, not their argv.
        let common = ["--prefix", prefix]
        stack.environment["SLUICE_URL"] = brokerURL
        // Outcomes signed by the worker, checked by the coordinator: a key for this stack only.
        stack.environment["SLUICE_EVENT_KEY"] = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()

        // 2. Coordinator and worker, as child processes of this one.
        let store = URL(fileURLWithPath: dataDir).appendingPathComponent("coordinator.sqlite").path
        try stack.spawn("coordinator", ["coordinator", "--store", "sqlite:\(store)", "--http", http, "--supervised"] + common)
        try stack.spawn("worker", ["worker", "--queue", "demo", "--concurrency", "8", "--retry-base", "500ms",
                                   "--metrics", "127.0.0.1:\(port + 210)", "--supervised"] + common)
        var api = CoordinatorClient(base: apiURL)
        step("waiting for the coordinator API at \(apiBase)...")
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            if let failed = stack.exited() { throw CLIError("the \(failed.name) exited with status \(failed.status); see \(failed.log)") }
            if let health = try? await api.health(), health.active == "true" { break }
            guard ContinuousClock.now < deadline else { throw CLIError("the coordinator did not become active within 60 s; see \(stack.logPath("coordinator"))") }
            try await Task.sleep(for: .milliseconds(200))
        }

        // 3. The demo workflow (the dead queue may hold letters of earlier demos).
        let broker = try await RabbitMQBroker.connect(url: try ConnectionOptions.brokerURL(brokerURL), topology: try Topology(prefix: prefix), connectionName: "sluice dev")
        defer { Task { await broker.close() } }
        let deadBefore = (try? await broker.queueState(broker.topology.deadQueue("demo")).messageCount) ?? 0
        _ = try await api.registerWorkflow(yaml: Self.demoWorkflow)
        let run = try await api.startRun(StartRunRequest(workflow: "sluice-demo", input: [:]))
        let runID = run.runID
        print("""

        Sluice dev stack
          dashboard          \(apiBase)/ui/runs/\(runID)
          broker             \(redacted(brokerURL))
          management UI      \(managementURL.map { "\($0) (guest / guest)" } ?? "(the broker's management plugin)")
          coordinator API    \(apiBase)/v1/runs/\(runID)
          worker metrics     http://127.0.0.1:\(port + 210)/metrics
          logs               \(stack.logPath("coordinator")), \(stack.logPath("worker"))\(clusterCommands.map { "\n  crash a node       \($0)" } ?? "")

        demo run \(runID):
        """)
        flushStandardOutput()
        api.base = apiURL
        let final = try await watch(runID, api, stack)
        let status = final.status.rawValue
        print("\ndemo run \(status).")
        let flakyAttempts = final.steps["flaky"].map { "\($0.attempts)" } ?? "?"
        print("  retry:       step 'flaky' failed twice and succeeded on attempt \(flakyAttempts) (the worker retried it through the delay ladder)")
        let dead = (try? await broker.queueState(broker.topology.deadQueue("demo")).messageCount) ?? 0
        print("  dead letter: \(Int(dead) - Int(deadBefore)) new in the dead queue of 'demo' (\(dead) in all), the element that failed for good;"
              + " see them with: sluice dead list demo\(prefix == "sluice" ? "" : " --prefix \(prefix)")")
        print("  output:      \(final.output?.jsonText ?? "null")")

        // 4. The saga demo: its charge fails, and what was booked is undone.
        _ = try await api.registerWorkflow(yaml: Self.sagaWorkflow)
        let trip = try await api.startRun(StartRunRequest(workflow: "sluice-demo-trip", input: ["trip": "LIS-OSL"]))
        print("\nsaga demo run \(trip.runID) (a booking whose card charge fails; each booked step has a compensation):")
        flushStandardOutput()
        let undone = try await watch(trip.runID, api, stack)
        let order = undone.compensation?.order ?? []
        print("\nsaga demo run \(undone.status.rawValue): the charge failed, so \(order.map { "'\($0)'" }.joined(separator: " then ")) "
              + "\(order.count == 1 ? "was" : "were") undone, the last booked first (sluice workflow status \(trip.runID))")
        if exitWhenDone {
            if status != "completed" { throw CLIError("the demo run ended \(status)") }
            if undone.status != .compensated { throw CLIError("the saga demo run ended \(undone.status.rawValue)") }
            return
        }
        print("\nThe stack keeps running: open the dashboard at \(apiBase)/ui/runs/\(runID), or try `sluice top`, `sluice queues`, "
              + "`sluice workers`, `sluice workflow list`. Ctrl-C stops it.")
        flushStandardOutput()
        while true {
            if let failed = stack.exited() { throw CLIError("the \(failed.name) exited with status \(failed.status); see \(failed.log)") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// Prints a run's progress as it changes, until it ends (3 minutes at most).
    private func watch(_ runID: String, _ api: CoordinatorClient, _ stack: DevStack) async throws -> RunState {
        var lastFrame: [String] = []
        let deadline = ContinuousClock.now + .seconds(180)
        while true {
            if let failed = stack.exited() { throw CLIError("the \(failed.name) exited with status \(failed.status); see \(failed.log)") }
            guard ContinuousClock.now < deadline else { throw CLIError("the demo run \(runID) did not finish within 3 minutes; see the logs") }
            let state = try await api.run(runID)
            let frame = Self.progress(state)
            if frame != lastFrame {
                for line in frame where !lastFrame.contains(line) { print("  " + line) }
                flushStandardOutput()
                lastFrame = frame
            }
            if state.status.isFinal { return state }
            try await Task.sleep(for: .milliseconds(300))
        }
    }

    private func step(_ text: String) {
        print("dev: \(text)")
        flushStandardOutput()
    }

    private func redacted(_ url: String) -> String {
        (try? ConnectionOptions.brokerURL(url).description) ?? url
    }

    /// One line per step: state, attempts, and a map's elements by state.
    static func progress(_ run: RunState) -> [String] {
        run.steps.keys.sorted().map { id in
            let s = run.steps[id]!
            var line = "\(id.padding(toLength: 8, withPad: " ", startingAt: 0)) \(s.status.rawValue)"
            if s.attempts > 1 { line += ", attempt \(s.attempts)" }
            if let elements = s.elements {
                var counts: [String: Int] = [:]
                for e in elements { counts[e.status.rawValue, default: 0] += 1 }
                line += " (" + counts.keys.sorted().map { "\(counts[$0]!) \($0)" }.joined(separator: ", ") + ")"
            }
            if let error = s.error { line += ": \(error)" }
            if let undo = s.compensation { line += "; compensation \(undo.status.rawValue)" }
            return line
        }
    }

    /// The saga demo: three bookings, the third fails for good; the two
    /// before it are undone by their compensations, hotel then flight.
    static let sagaWorkflow = """
    name: sluice-demo-trip
    version: 1
    queue: demo
    steps:
      - id: flight
        task: sluice.echo
        arguments: { booked: flight, trip: "${input.trip}" }
        compensate: { task: sluice.echo, arguments: { cancelled: "${output.booked}" } }
      - id: hotel
        after: [flight]
        task: sluice.sleep
        arguments: { seconds: 0.5 }
        compensate: { task: sluice.echo, arguments: { cancelled: hotel } }
      - id: charge
        after: [hotel]
        task: sluice.fail
        arguments: { times: 100, message: "card declined (on purpose)" }
        maxAttempts: 1
      - id: confirm
        after: [charge]
        task: sluice.echo
    """

    /// The demo: a fan-out with one element that is dead-lettered (tolerated
    /// by its join), a step that fails twice before it succeeds, and a join.
    static let demoWorkflow = """
    name: sluice-demo
    version: 1
    queue: demo
    output: { slept: "${steps.fanout.output}", flaky: "${steps.flaky.output}" }
    steps:
      - id: prepare
        task: sluice.echo
        arguments:
          items: [0.2, 0.4, 0.3, 0.6, 0.1, 0.5, 0.2, -1]
      - id: fanout
        after: [prepare]
        map:
          over: steps.prepare.output.items
          task: sluice.sleep
          arguments: { seconds: "${item}" }
          join: tolerate
      - id: flaky
        after: [prepare]
        task: sluice.fail
        arguments: { times: 2, message: "fails twice on purpose, then succeeds" }
        maxAttempts: 5
        retry: { base: 500ms, factor: 2, cap: 5s, jitter: 0 }
      - id: report
        after: [fanout, flaky]
        join: all
    """
}

