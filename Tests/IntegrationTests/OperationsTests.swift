import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SluiceAMQP
import SluiceClient
import SluiceCore
import SluiceLocalBroker
import SluiceMonitor
import SluiceRabbitMQ
import SluiceSpawn
import SluiceTesting
import SluiceWire
import SluiceWorker
import SluiceWorkflow
import Testing

/// Child process ids of `pid` (procps `ps`).
func children(of pid: Int32) async throws -> Set<Int32> {
    let (_, output) = try await runTool("/bin/ps", ["-o", "pid=", "--ppid", "\(pid)"])
    return Set(output.split(whereSeparator: \.isWhitespace).compactMap { Int32($0) })
}

func isAlive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 }

/// A process's argv as `ps` shows it to every user ("" once it is gone).
func commandLine(of pid: Int32) -> String {
    let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()
    return String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
}

/// Polls `check` until it returns a value, for at most `seconds`.
func eventually<T: Sendable>(_ seconds: Double, _ what: String, every: Duration = .milliseconds(200),
                             _ check: @escaping @Sendable () async throws -> T?) async throws -> T {
    let deadline = TestTime.deadline(seconds)
    while ContinuousClock.now < deadline {
        if let value = try await check() { return value }
        try await Task.sleep(for: every)
    }
    throw TimedOut(what: what, seconds: TestTime.scaled(seconds))
}

func httpGet(_ url: String) async throws -> (Int, String) {
    var request = URLRequest(url: URL(string: url)!)
    request.timeoutInterval = 5
    let (data, response) = try await URLSession.shared.data(for: request)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
}

// One at a time: several of these start many processes (a broker node, worker
// processes), which on a 2-core machine slows every other test running beside them.
@Suite("Operating Sluice: queues, workers, top, supervisor, metrics, dev", .serialized)
struct OperationsTests {
    @Test("sluice queues shows ready, unacknowledged and dead counts, and reading changes nothing")
    func queuesCounts() async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        let q = "counts"
        try await h.broker.prepare(queues: [q])
        let client = TaskClient(broker: h.broker)
        for i in 0..<5 { _ = try await client.enqueue(name: "t", json: Array("{\"i\":\(i)}".utf8), options: .init(queue: q)) }
        // One task in the dead queue, as a worker would put it there.
        try await h.broker.publish(h.topology.deadMessage(queue: q, properties: BasicProperties(messageId: "d1", type: "t"),
                                                          body: Array("{}".utf8), reason: .nonRetryable, errorType: "x",
                                                          errorMessage: "test", worker: "test"))
        // Two delivered and held unacknowledged by a consumer.
        let channel = try await h.broker.connection.openChannel()
        try await channel.qos(prefetchCount: 2)
        let consumer = try await channel.consume(queue: h.topology.workQueue(q))
        let held = try await take(2, from: consumer)
        #expect(held.count == 2)
        try await h.waitForReady(q, count: 3)

        let common = ["--url", h.url, "--prefix", h.topology.prefix]
        // With the management API: its sample lags by up to 5 s, so wait for it.
        // Generous: on a loaded machine with many queues the management sample lagged past 30 s.
        let row = try await eventually(90, "sluice queues to report 3 ready, 2 unacked, 1 dead") { () -> JSONValue? in
            let (status, output) = try await SluiceBinary.run(["queues", "--json"] + common)
            #expect(status == 0, "\(output)")
            let overview = try JSONValue.parse(Array(output.utf8))
            guard case .array(let rows)? = overview["queues"],
                  let row = rows.first(where: { $0["queue"] == .string(q) }) else { return Optional<JSONValue>.none }
            // (JSONValue takes `nil` as its null: say Optional.none.)
            let matches = row["ready"] == .number(3) && row["unacknowledged"] == .number(2) && row["dead"] == .number(1)
                && row["consumers"] == .number(1) && overview["ratesAvailable"] == .bool(true)
            return matches ? row : Optional<JSONValue>.none
        }
        #expect(row["publishRate"] != nil, "\(row)")
        // One node: the work queue's one member is online, and it leads.
        #expect(row["members"] == .number(1) && row["online"] == .number(1) && row["underReplicated"] == .bool(false), "\(row)")
        #expect(row["leader"] != nil, "\(row)")

        // Without it: counts from passive declares, and a clear word about rates.
        let (status, output) = try await SluiceBinary.run(["queues", "--no-management", "--queue", q, "--no-color"] + common)
        #expect(status == 0)
        let line = output.split(separator: "\n").first { $0.hasPrefix(q + " ") }.map(String.init) ?? ""
        // (No replicas without the management API: ONLINE and LEADER are "-".)
        // OLDEST: this fresh command has seen the queue once, so its age counts from now, a lower bound.
        #expect(line.split(separator: " ").map(String.init) == [q, "3", "≥0s", "-", "1", "-", "-", "-", "1", "-", "-", "-"], "\(output)")
        #expect(output.contains("rates and unacknowledged counts unavailable"))

        // Nothing was delivered by reading: the 3 ready tasks come out first-time.
        try await channel.close()
        try await h.waitForReady(q, count: 5)
        let reader = try await h.broker.connection.openChannel()
        let fresh = try await take(5, from: try await reader.consume(queue: h.topology.workQueue(q)), ack: true)
        let firstTime = fresh.filter { !$0.redelivered && $0.properties.headers?["x-delivery-count"] == nil }
        #expect(firstTime.count == 3, "the 2 held tasks were delivered before; the others never")
        try await reader.close()
    }

    @Test("sluice workers lists a live worker from its heartbeat, with its counts")
    func workersList() async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        let worker = h.startWorker(queues: ["wq"], registry: .echo()) { $0.workerID = "it-worker-\(h.topology.prefix)" }
        let (status, output) = try await eventually(30, "sluice workers to list the worker") { () -> (Int32, String)? in
            let result = try await SluiceBinary.run(["workers", "--json", "--wait", "1s", "--url", h.url, "--prefix", h.topology.prefix])
            return result.output.contains("it-worker-\(h.topology.prefix)") ? result : nil
        }
        #expect(status == 0)
        let list = try JSONValue.parse(Array(output.utf8))
        guard case .array(let entries) = list, let entry = entries.first else { Issue.record("no entries: \(output)"); return }
        #expect(entry["status"] == .string("running"))
        #expect(entry["heartbeat"]?["queues"] == .array([.string("wq")]))
        #expect(entry["heartbeat"]?["concurrency"] == .number(10))
        #expect(entry["heartbeat"]?["version"] == .string(SluiceVersion.current))
        try await worker.stop()
    }

    @Test("sluice top runs under tmux, shows the queue and worker it finds, and quits on q")
    func topUnderTmux() async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        let q = "topq\(UInt16.random(in: 0...9999))"
        let worker = h.startWorker(queues: [q], registry: .echo()) { $0.workerID = "top-worker-\(h.topology.prefix)" }
        let socket = "sluice-top-\(UUID().uuidString.prefix(8))"
        var env = ProcessInfo.processInfo.environment
        env["TMUX"] = nil
        env["TERM"] = "xterm-256color"
        let environment = env
        let tmux = "/usr/bin/tmux"
        // The tmux server is a daemon that keeps every descriptor it inherits;
        // Foundation's Process learns that a child ended from one of them, so
        // the client must not pass them on: close all but 0-2, then run tmux.
        @Sendable func runTmux(_ arguments: [String]) async throws -> (status: Int32, output: String) {
            try await runTool("/bin/bash", ["-c", #"for fd in /proc/self/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-" 2>/dev/null; done; exec "$@""#, "bash", tmux] + arguments,
                                 environment: environment)
        }
        let command = "\(SluiceBinary.url.path) top --url '\(h.url)' --prefix \(h.topology.prefix) --api http://127.0.0.1:1"
        let started = try await runTmux(["-L", socket, "new-session", "-d", "-s", "top", "-x", "200", "-y", "50", command])
        #expect(started.status == 0, "\(started.output)")
        defer { Task { _ = try? await runTmux(["-L", socket, "kill-server"]) } }
        let screen = try await eventually(60, "top to show queue \(q) and the worker") { () -> String? in
            let (_, pane) = try await runTmux(["-L", socket, "capture-pane", "-p", "-t", "top"])
            return pane.contains(q) && pane.contains("top-worker-\(h.topology.prefix)") ? pane : nil
        }
        #expect(screen.contains("sluice top"))
        #expect(screen.contains("WORKFLOW RUNS"))
        _ = try await runTmux(["-L", socket, "send-keys", "-t", "top", "q"])
        // The session ends when top exits.
        _ = try await eventually(15, "top to quit on q") { () -> Bool? in
            let (status, _) = try await runTmux(["-L", socket, "has-session", "-t", "top"])
            return status != 0 ? true : nil
        }
        try await worker.stop()
    }

    @Test("worker --processes 3: a killed child restarts, a stuck one is killed at the hard limit and its task redelivered, SIGTERM drains all")
    func supervisor() async throws {
        let h = try await TaskHarness.make(deliveryLimit: 2)
        defer { Task { await h.broker.close() } }
        let q = "sup"
        try await h.broker.prepare(queues: [q])
        let events = try await h.recordEvents()
        let supervisor = try SluiceBinary.start(["worker", "--url", h.url, "--prefix", h.topology.prefix, "--delivery-limit", "2",
                                                 "--queue", q, "--processes", "3", "--hard-time-limit", "2s", "--started-events",
                                                 "--log-level", "warning"])
        defer { SluiceBinary.stopIfRunning(supervisor) }
        let pid = supervisor.processIdentifier
        /// Waits until the supervisor has 3 children, none of them `gone`.
        func threeChildren(_ what: String, without gone: Int32? = nil) async throws -> Set<Int32> {
            try await eventually(30, what) { () -> Set<Int32>? in
                let c = try await children(of: pid)
                return c.count == 3 && !(gone.map(c.contains) ?? false) ? c : nil
            }
        }
        let first = try await threeChildren("3 worker processes")
        // `ps` may list a child between its spawn and its exec, while it is
        // still a copy of sluice: wait for the exec (bounded).
        for child in first {
            _ = try await eventually(30, "worker process \(child) to run the small binary, sluice-worker") { () -> Bool? in
                let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(child)/exe")) ?? ""
                return path.hasSuffix("/sluice-worker") ? true : nil
            }
        }
        // Crash one: the supervisor starts a new one.
        let victim = first.sorted()[0]
        kill(victim, SIGKILL)
        let second = try await threeChildren("the killed process to be replaced", without: victim)
        #expect(second.intersection(first).count == 2)

        // A task stuck past the hard limit: its process is killed, the task redelivered,
        // and at the delivery limit the broker dead-letters it.
        let client = TaskClient(broker: h.broker)
        let id = try await client.enqueue(name: "sluice.sleep", json: Array(#"{"seconds":600}"#.utf8), options: .init(queue: q))
        let starts = try await events.waitUntil("the stuck task to start twice", seconds: 60) { all in
            all.filter { $0.kind == .started && $0.taskID == id }.count >= 2
        }
        #expect(starts.filter { $0.kind == .started && $0.taskID == id }.count >= 2)
        _ = try await eventually(60, "the stuck task to be dead-lettered at the delivery limit") { () -> Bool? in
            try await h.broker.queueState(h.topology.deadQueue(q)).messageCount == 1 ? true : nil
        }

        // SIGTERM: every child drains and exits, and so does the supervisor, with 0.
        // (The last process killed at the limit may still be in its restart backoff.)
        let before = try await threeChildren("3 worker processes again")
        kill(pid, SIGTERM)
        let status = try await within(60, "the supervisor to stop") { try await SluiceBinary.exitStatus(of: supervisor) }
        #expect(status == 0)
        #expect(before.filter(isAlive).isEmpty, "no worker process outlives the supervisor")
    }

    @Test("/metrics on a worker that ran known tasks shows those counts; `sluice worker` runs as sluice-worker unless told to stay in process",
          arguments: [false, true])
    func workerMetrics(inProcess: Bool) async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        let q = "met\(inProcess ? "in" : "lean")"
        try await h.broker.prepare(queues: [q])
        let events = try await h.recordEvents()
        let port = CoordinatorProcess.freePort()
        // --crash-limit means nothing without --processes: `sluice worker` leaves it out when it hands over.
        let worker = try SluiceBinary.start(["worker", "--url", h.url, "--prefix", h.topology.prefix, "--queue", q, "--crash-limit", "3",
                                             "--metrics", "127.0.0.1:\(port)", "--log-level", "warning"],
                                            environment: inProcess ? ["SLUICE_WORKER_IN_PROCESS": "1"] : [:])
        defer { SluiceBinary.stopIfRunning(worker) }
        let client = TaskClient(broker: h.broker)
        var ids: Set<String> = []
        for _ in 0..<3 { ids.insert(try await client.enqueue(name: "sluice.echo", json: Array("{}".utf8), options: .init(queue: q))) }
        ids.insert(try await client.enqueue(name: "sluice.fail", json: Array(#"{"permanent":true}"#.utf8), options: .init(queue: q)))
        _ = try await events.waitForOutcomes(ids)
        // The worker counts an outcome just after publishing its event: poll.
        let text = try await eventually(30, "/metrics to count the 4 tasks") { () -> String? in
            // The metrics server may bind after the worker has run its first tasks.
            guard let (status, text) = try? await httpGet("http://127.0.0.1:\(port)/metrics") else { return nil }
            return status == 200 && text.contains(#"sluice_tasks_in_flight{queue="\#(q)"} 0"#)
                && text.contains(#"outcome="dead"} 1"#) ? text : nil
        }
        #expect(text.contains(#"sluice_tasks_total{task="sluice.echo",queue="\#(q)",outcome="succeeded"} 3"#), "\(text)")
        #expect(text.contains(#"sluice_tasks_total{task="sluice.fail",queue="\#(q)",outcome="dead"} 1"#))
        #expect(text.contains(#"sluice_task_duration_seconds_count{task="sluice.echo",queue="\#(q)"} 3"#))
        #expect(text.contains(#"sluice_task_wait_seconds_count{queue="\#(q)"} 4"#))
        #expect(text.contains(#"sluice_tasks_in_flight{queue="\#(q)"} 0"#))
        // The same pid, running the small binary (or, told so, still sluice itself).
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(worker.processIdentifier)/exe")) ?? ""
        #expect(executable.hasSuffix(inProcess ? "/sluice" : "/sluice-worker"), "\(executable)")

        // The metrics endpoint's edges: health, unknown paths and methods, garbage, a request that never ends.
        #expect(try await httpGet("http://127.0.0.1:\(port)/healthz") == (200, "ok\n"))
        let cases: [(String, String, String)] = [
            ("an unknown path", "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 404"),
            ("a POST", "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405"),
            ("no request line", "hello\r\n\r\n", "HTTP/1.1 400"),
            ("a 100 kB header", "GET /metrics HTTP/1.1\r\nX-Big: " + String(repeating: "b", count: 100_000) + "\r\n\r\n", "HTTP/1.1 400"),
        ]
        for (what, request, expected) in cases {
            let (response, closed) = await RawHTTP.exchange(port: port, Array(request.utf8))
            #expect(response.hasPrefix(expected), "\(what): \(response.prefix(200))")
            #expect(closed, "\(what): the connection was left open")
        }
        let (_, closed) = await RawHTTP.exchange(port: port, Array("GET /metrics HTTP/1.1\r\nHost: x\r\n".utf8), seconds: 30)
        #expect(closed, "a half-sent request was left open")
        #expect(try await httpGet("http://127.0.0.1:\(port)/healthz").0 == 200, "it still serves")

        kill(worker.processIdentifier, SIGTERM)
        #expect(try await within(60, "the worker to stop") { try await SluiceBinary.exitStatus(of: worker) } == 0)
    }

    @Test("sluice dev: the stack comes up, the demo completes with its retry and dead letter, the saga demo is compensated, and Ctrl-C leaves nothing behind")
    func dev() async throws {
        let node = PrivateBroker.unique("dev")
        let port = CoordinatorProcess.freePort()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-dev-\(UUID().uuidString)").path
        let process = try SluiceBinary.start(["dev", "--broker-port", "\(node.basePort)", "--http", "127.0.0.1:\(port)", "--data-dir", dir])
        defer {
            SluiceBinary.stopIfRunning(process)
            try? FileManager.default.removeItem(atPath: dir)
        }
        let devNode = PrivateBroker(name: "dev-\(node.basePort)", basePort: node.basePort, plugins: "rabbitmq_management")
        let output = try await eventually(180, "the demo run to finish") { () -> String? in
            let text = SluiceBinary.log(of: process) ?? ""
            if !process.isRunning { throw TimedOut(what: "sluice dev exited early:\n\(text)", seconds: 0) }
            return text.contains("Ctrl-C stops it") ? text : nil
        }
        #expect(output.contains("demo run completed."), "\(output)")
        #expect(output.contains("succeeded on attempt 3"))
        #expect(output.contains("saga demo run compensated: the charge failed, so 'hotel' then 'flight' were undone"), "\(output)")
        #expect(output.contains("dead letter: 1 new in the dead queue of 'demo' (1 in all)"), "\(output)")
        #expect(output.contains("management UI      \(node.managementURL)"))
        #expect(output.contains("coordinator API    http://127.0.0.1:\(port)/v1/runs/"))
        // The dashboard's page of the demo run, as printed, draws the run (loopback: no sign-in).
        let dashboard = try #require(output.firstMatch(of: /dashboard +(http:\/\/\S+\/ui\/runs\/\S+)/)?.1).description
        let (pageStatus, page) = try await httpGet(dashboard)
        #expect(pageStatus == 200 && page.contains("<svg") && page.contains("id=\"node-fanout\""), "\(dashboard): \(pageStatus) \(page.prefix(300))")
        let started = try await children(of: process.processIdentifier)
        #expect(started.count == 2, "the coordinator and the worker")
        for child in started {
            // The broker URL (with its password) reaches the children in their environment, not in argv.
            #expect(!commandLine(of: child).contains("amqp://"), "\(commandLine(of: child))")
        }
        kill(process.processIdentifier, SIGINT)
        let status = try await within(90, "sluice dev to stop") { try await SluiceBinary.exitStatus(of: process) }
        #expect(status == 0)
        #expect(started.filter(isAlive).isEmpty)
        let running = try? await devNode.run(["running"])
        #expect(running == nil, "the private broker it started is stopped")
        try? await devNode.destroy()
    }
}
