import Foundation
import SluiceAMQP
import SluiceClient
import SluiceCore
import SluiceLocalBroker
import SluiceRabbitMQ
import SluiceSpawn
import SluiceTesting
import SluiceWire
import Testing

/// `sluice worker` as a real process: killed, stopped, and fed by other languages.
@Suite("Worker processes")
struct WorkerProcessTests {
    func workerArguments(_ h: TaskHarness, queue: String, _ extra: [String] = []) -> [String] {
        ["worker", "--url", h.url, "--prefix", h.topology.prefix, "--delivery-limit", "\(h.topology.deliveryLimit)",
         "--queue", queue, "--log-level", "warning", "--started-events"] + extra  // the tests wait for `started` events
    }

    func sleepTasks(_ h: TaskHarness, queue: String, count: Int, seconds: Double) async throws -> Set<String> {
        let results = try await TaskClient(broker: h.broker).enqueue(batch: Array(repeating: TaskClient.Request(
            name: "sluice.sleep", arguments: Array(#"{"seconds":\#(seconds)}"#.utf8), options: .init(queue: queue)), count: count))
        return Set(try results.map { try $0.get() })
    }

    @Test("a worker killed with SIGKILL mid-task loses nothing: its tasks are redelivered and complete")
    func sigkill() async throws {
        let h = try await TaskHarness.make()
        let events = try await h.recordEvents()
        // 2 s each, 3 rounds at concurrency 4: the kill lands mid-way even when
        // `started` events reach the recorder a second late on a loaded machine.
        let ids = try await sleepTasks(h, queue: "kill", count: 12, seconds: 2)
        let first = try SluiceBinary.start(workerArguments(h, queue: "kill", ["--concurrency", "4"]))
        defer { SluiceBinary.stopIfRunning(first) }
        // Kill it while it holds tasks: after some have started, before all are done.
        _ = try await events.waitUntil("a few tasks to start") { $0.filter { $0.kind == .started }.count >= 4 }
        kill(first.processIdentifier, SIGKILL)
        #expect(try await SluiceBinary.exitStatus(of: first) == SIGKILL)
        let doneBeforeKill = await events.outcomes.count
        #expect(doneBeforeKill < ids.count, "the kill must land while tasks are unfinished")

        let second = try SluiceBinary.start(workerArguments(h, queue: "kill", ["--concurrency", "4"]))
        defer { SluiceBinary.stopIfRunning(second) }
        let outcomes = try await events.waitForOutcomes(ids)
        #expect(outcomes.values.allSatisfy { $0.kind == .succeeded })
        second.terminate()
        #expect(try await SluiceBinary.exitStatus(of: second) == 0)
        await h.broker.close()
    }

    @Test("a task that kills its worker every time ends dead with reason delivery_limit")
    func deliveryLimit() async throws {
        let h = try await TaskHarness.make(deliveryLimit: 2)
        let id = try await TaskClient(broker: h.broker).enqueue(name: "sluice.crash", json: Array("{}".utf8), options: .init(queue: "crash"))
        // Each worker process dies on the task; the broker counts deliveries
        // and dead-letters it after the limit (2), i.e. on the third return.
        for run in 1...3 {
            let (status, output) = try await within(60, "worker run \(run)") {
                try await SluiceBinary.run(workerArguments(h, queue: "crash"))
            }
            #expect(status == 70, "run \(run): the worker should die on sluice.crash: \(output)")
        }
        try await within(30, "the broker to dead-letter the task") {
            while try await h.broker.queueState(h.topology.deadQueue("crash")).messageCount == 0 {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(try await h.broker.queueState(h.topology.workQueue("crash")).messageCount == 0)
        let dead = try await h.takeDead("crash")
        #expect(dead.count == 1)
        #expect(dead.first?.properties.messageId == id)
        #expect(dead.first?.properties.headers?["x-first-death-reason"]?.stringValue == "delivery_limit")
        await h.broker.close()
    }

    @Test("SIGTERM during work: running tasks finish, the process exits 0, nothing is lost")
    func sigterm() async throws {
        let h = try await TaskHarness.make()
        let events = try await h.recordEvents()
        let ids = try await sleepTasks(h, queue: "term", count: 10, seconds: 1)
        let worker = try SluiceBinary.start(workerArguments(h, queue: "term", ["--concurrency", "3", "--shutdown-grace", "20s"]))
        defer { SluiceBinary.stopIfRunning(worker) }
        _ = try await events.waitUntil("three tasks to start") { $0.filter { $0.kind == .started }.count >= 3 }
        worker.terminate()  // SIGTERM
        #expect(try await within(30, "the worker to exit") { try await SluiceBinary.exitStatus(of: worker) } == 0)
        let started = await Set(events.events.filter { $0.kind == .started }.map(\.taskID))
        // Their outcome events were confirmed before the worker exited; the recorder may lag a little.
        _ = try await events.waitForOutcomes(started, seconds: 30)
        let finished = await Set(events.outcomes.keys)
        #expect(started.isSubset(of: finished), "every task that started before SIGTERM finished")
        // Every task that did not finish is back in the queue: finished + queued = all.
        try await h.waitForReady("term", count: ids.count - finished.count)

        // The rest run on the next worker.
        let next = try SluiceBinary.start(workerArguments(h, queue: "term", ["--concurrency", "10"]))
        defer { SluiceBinary.stopIfRunning(next) }
        let outcomes = try await events.waitForOutcomes(ids)
        #expect(outcomes.count == ids.count)
        next.terminate()
        _ = try await SluiceBinary.exitStatus(of: next)
        await h.broker.close()
    }

    @Test("SIGTERM past the grace period returns unfinished tasks to the queue")
    func sigtermPastGrace() async throws {
        let h = try await TaskHarness.make()
        let events = try await h.recordEvents()
        let ids = try await sleepTasks(h, queue: "slow", count: 2, seconds: 30)
        let worker = try SluiceBinary.start(workerArguments(h, queue: "slow", ["--shutdown-grace", "500ms"]))
        defer { SluiceBinary.stopIfRunning(worker) }
        _ = try await events.waitUntil("both tasks to start") { $0.filter { $0.kind == .started }.count >= 2 }
        worker.terminate()
        #expect(try await within(30, "the worker to exit") { try await SluiceBinary.exitStatus(of: worker) } == 0)
        try await h.waitForReady("slow", count: ids.count)
        await h.broker.close()
    }

    @Test("sluice dead replay moves dead tasks back and they run; purge empties the dead queue")
    func replayAndPurge() async throws {
        let h = try await TaskHarness.make()
        let events = try await h.recordEvents()
        let client = TaskClient(broker: h.broker)
        var ids: Set<String> = []
        for i in 0..<3 { ids.insert(try await client.enqueue(name: "custom.job", json: Array("{\"n\":\(i)}".utf8), options: .init(queue: "replay"))) }
        // A worker without a handler for custom.job dead-letters them.
        let plain = try SluiceBinary.start(workerArguments(h, queue: "replay"))
        defer { SluiceBinary.stopIfRunning(plain) }
        let dead = try await events.waitForOutcomes(ids)
        #expect(dead.values.allSatisfy { $0.deadReason == .unknownTask })
        plain.terminate()
        _ = try await SluiceBinary.exitStatus(of: plain)

        let common = ["--url", h.url, "--prefix", h.topology.prefix]
        let list = try await SluiceBinary.run(["dead", "list", "replay", "--json"] + common)
        #expect(list.status == 0)
        let listed = try JSONSerialization.jsonObject(with: Data(list.output.utf8)) as? [[String: Any]]
        #expect(Set(listed?.compactMap { $0["id"] as? String } ?? []) == ids)
        #expect(listed?.allSatisfy { $0["reason"] as? String == "unknown_task" } == true)
        #expect(try await h.broker.queueState(h.topology.deadQueue("replay")).messageCount == 3, "list is read-only")

        let one = ids.first!
        let show = try await SluiceBinary.run(["dead", "show", "replay", one] + common)
        #expect(show.status == 0 && show.output.contains(one) && show.output.contains("unknown_task"))

        // A worker that can run anything (--exec) now takes the replayed tasks.
        let capable = try SluiceBinary.start(workerArguments(h, queue: "replay", ["--exec", "cat"]))
        defer { SluiceBinary.stopIfRunning(capable) }
        let replay = try await SluiceBinary.run(["dead", "replay", "replay", "--all"] + common)
        #expect(replay.status == 0, "\(replay.output)")
        #expect(replay.output.contains("replayed 3 tasks"))
        let wanted = ids
        _ = try await events.waitUntil("the replayed tasks to succeed") { events in
            Set(events.filter { $0.kind == .succeeded }.map(\.taskID)).isSuperset(of: wanted)
        }
        let results = await events.events.filter { $0.kind == .succeeded }.compactMap(\.result)
        #expect(results.contains(#"{"n":0}"#))
        capable.terminate()
        _ = try await SluiceBinary.exitStatus(of: capable)

        // Purge.
        _ = try await client.enqueue(name: "custom.job", json: Array("{}".utf8), options: .init(queue: "replay", deadline: Date().addingTimeInterval(-1)))
        let again = try SluiceBinary.start(workerArguments(h, queue: "replay"))
        defer { SluiceBinary.stopIfRunning(again) }
        _ = try await events.waitUntil("another dead task") { $0.filter { $0.kind == .dead }.count >= 4 }
        again.terminate()
        _ = try await SluiceBinary.exitStatus(of: again)
        let purge = try await SluiceBinary.run(["dead", "purge", "replay"] + common)
        #expect(purge.output.contains("purged 1 dead task"))
        #expect(try await h.broker.queueState(h.topology.deadQueue("replay")).messageCount == 0)
        await h.broker.close()
    }

    @Test("--exec: exit 0 succeeds with stdout as the result, 75 retries, other codes fail per the policy")
    func execExitCodes() async throws {
        let h = try await TaskHarness.make()
        let events = try await h.recordEvents()
        let client = TaskClient(broker: h.broker)
        let again = try await client.enqueue(name: "shell.again", json: Array(#"{"n":1}"#.utf8), options: .init(queue: "exec"))
        let broken = try await client.enqueue(name: "shell.broken", json: Array("{}".utf8), options: .init(queue: "exec"))
        // Asks for a retry on the first attempt, then echoes its arguments; shell.broken always exits 3.
        let script = #"[ "$SLUICE_TASK_NAME" = shell.broken ] && exit 3; [ "$SLUICE_TASK_ATTEMPT" = 1 ] && exit 75; cat"#
        let worker = try SluiceBinary.start(workerArguments(h, queue: "exec", [
            "--exec", script, "--max-attempts", "2", "--retry-base", "250ms"]))
        defer { SluiceBinary.stopIfRunning(worker) }
        let outcomes = try await events.waitForOutcomes([again, broken])
        #expect(outcomes[again]?.kind == .succeeded)
        #expect(outcomes[again]?.attempt == 2)
        #expect(outcomes[again]?.result == #"{"n":1}"#)
        let retry = await events.events.first { $0.taskID == again && $0.kind == .retrying }
        #expect(retry?.errorType == "exec_retry")
        #expect(outcomes[broken]?.kind == .dead)
        #expect(outcomes[broken]?.deadReason == .maxAttempts)
        #expect(outcomes[broken]?.errorType == "exec_exit_3")
        #expect(outcomes[broken]?.attempt == 2)
        worker.terminate()
        #expect(try await SluiceBinary.exitStatus(of: worker) == 0)
        await h.broker.close()
    }

    @Test("tasks published by Python's pika and by amqp-publish, as docs/wire-format.md shows, are run")
    func interop() async throws {
        let h = try await TaskHarness.make()
        let events = try await h.recordEvents()
        try await h.broker.prepare(queues: ["interop"])
        let worker = try SluiceBinary.start(workerArguments(h, queue: "interop"))
        defer { SluiceBinary.stopIfRunning(worker) }
        let python = """
        import json, sys, time, pika
        params = pika.URLParameters(sys.argv[1])
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            exchange=sys.argv[2] + ".tasks",
            routing_key="interop",
            body=json.dumps({"from": "python"}),
            properties=pika.BasicProperties(
                message_id="from-pika",
                type="sluice.echo",
                content_type="application/json",
                delivery_mode=2,
                timestamp=int(time.time()),
                headers={"sluice-version": 1, "sluice-attempt": 1},
            ),
            mandatory=True,
        )
        connection.close()
        """
        let pika = try SluiceBinary.start(executable: "/usr/bin/python3", ["-c", python, h.url, h.topology.prefix])
        #expect(try await SluiceBinary.exitStatus(of: pika) == 0, "\(SluiceBinary.logTail(of: pika))")

        let publish = try SluiceBinary.start(executable: "/usr/bin/amqp-publish", [
            "--url", h.url, "-e", h.topology.tasksExchange, "-r", "interop", "-p", "-C", "application/json",
            "-H", "sluice-task: sluice.echo", "-H", "sluice-version: 1", "-b", #"{"from":"amqp-publish"}"#])
        #expect(try await SluiceBinary.exitStatus(of: publish) == 0, "\(SluiceBinary.logTail(of: publish))")

        let events2 = try await events.waitUntil("both interop tasks to succeed") {
            $0.filter { $0.kind == .succeeded }.count >= 2
        }
        let results = Set(events2.filter { $0.kind == .succeeded }.compactMap(\.result))
        #expect(results == [#"{"from": "python"}"#, #"{"from":"amqp-publish"}"#])
        #expect(events2.contains { $0.kind == .succeeded && $0.taskID == "from-pika" })
        worker.terminate()
        _ = try await SluiceBinary.exitStatus(of: worker)
        await h.broker.close()
    }

    @Test("a broker restarted while a worker idles: the worker resumes consuming by itself")
    func brokerRestartWhileIdle() async throws {
        let node = PrivateBroker.unique("idle")
        try await node.start()
        defer { Task { try? await node.destroy() } }
        let h = try await TaskHarness.make(url: node.amqpURL)
        try await h.broker.prepare(queues: ["idle"])
        let worker = try SluiceBinary.start(workerArguments(h, queue: "idle"))
        defer { SluiceBinary.stopIfRunning(worker) }
        // Idle: wait until it consumes (a consumer on the queue).
        try await within(30, "the worker to consume") {
            while try await h.broker.queueState(h.topology.workQueue("idle")).consumerCount == 0 {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        try await node.stop()
        try await node.start()
        // The harness' own connection recovers too; then a task is enqueued and run.
        let events = try await h.recordEvents()
        let id = try await TaskClient(broker: h.broker).enqueue(name: "sluice.echo", json: Array("{}".utf8), options: .init(queue: "idle"))
        let outcome = try await events.waitForOutcomes([id])[id]
        #expect(outcome?.kind == .succeeded)
        worker.terminate()
        #expect(try await SluiceBinary.exitStatus(of: worker) == 0)
        await h.broker.close()
        try await node.destroy()
    }
}
