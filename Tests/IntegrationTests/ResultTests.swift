import Foundation
import SluiceAMQP
import SluiceClient
import SluiceCore
import SluiceLocalBroker
import SluiceRabbitMQ
import SluiceTesting
import SluiceWire
import SluiceWorker
import Synchronization
import Testing

/// A producer waiting for its tasks' outcomes on the real broker: the
/// worker answers through the producer's reply queue (or RabbitMQ's direct
/// reply-to), only with final outcomes, also across a worker SIGKILL.
@Suite("Task results")
struct ResultTests {
    /// A registry with `add`: the sum of a JSON array of integers.
    static var adding: HandlerRegistry {
        var registry = HandlerRegistry()
        registry.register("add") { c in
            let numbers = try JSONDecoder().decode([Int].self, from: Data(c.arguments))
            return Array(String(numbers.reduce(0, +)).utf8)
        }
        return registry
    }

    /// Waits for an outcome that must be a dead task; returns it (nil, and an issue, otherwise).
    @discardableResult
    static func dead(_ wait: () async throws -> TaskResult, sourceLocation: SourceLocation = #_sourceLocation) async throws -> TaskFailed? {
        do {
            let result = try await wait()
            Issue.record("succeeded: \(result)", sourceLocation: sourceLocation)
            return nil
        } catch let failed as TaskFailed {
            return failed
        }
    }

    @Test("success, a retried task's final result, dead tasks with their reason (non_retryable, max_attempts, unknown_task, undecodable), a timeout")
    func outcomes() async throws {
        let h = try await TaskHarness.make()
        let client = TaskClient(broker: h.broker)
        var registry = Self.adding
        registry.register("flaky") { c in
            if c.attempt < 2 { throw TaskFailure(kind: "flaky", "first attempt fails") }
            return Array(#"{"attempt":\#(c.attempt)}"#.utf8)
        }
        registry.register("fatal") { _ in throw TaskFailure(kind: "bad_input", "no such user", retryable: false) }
        registry.register("always") { _ in throw TaskFailure(kind: "smtp", "down") }
        let worker = h.startWorker(queues: ["res"], registry: registry) {
            $0.retryPolicy = RetryPolicy(maxAttempts: 2, baseMilliseconds: 250, jitter: 0)
        }
        let options = EnqueueOptions(queue: "res")

        let sum = try await client.enqueueForResult(name: "add", json: Array("[1,2,39]".utf8), options: options)
        #expect(try await sum.result(as: Int.self, timeout: .seconds(60)) == 42)

        let flaky = try await client.enqueueForResult(name: "flaky", json: Array("{}".utf8), options: options)
        let flakyResult = try await flaky.result(timeout: .seconds(60))
        #expect(flakyResult.attempt == 2, "the retry did not answer; the final attempt did")
        #expect(flakyResult.json == #"{"attempt":2}"#)

        for (name, reason, type) in [("fatal", DeadReason.nonRetryable, "bad_input"), ("always", .maxAttempts, "smtp"),
                                     ("nobody.handles.this", .unknownTask, "unknown_task")] {
            let handle = try await client.enqueueForResult(name: name, json: Array("{}".utf8), options: options)
            let failed = try await Self.dead { try await handle.result(timeout: .seconds(60)) }
            #expect(failed?.reason == reason, "\(name): \(String(describing: failed))")
            #expect(failed?.errorType == type, "\(name): \(String(describing: failed))")
        }

        // A message that is not a task, published by other means with this client's reply queue.
        let address = try await client.replyAddress()
        try await h.publishRaw(queue: "res", body: Array("not json".utf8),
                               properties: BasicProperties(contentType: "application/json", replyTo: address, messageId: "raw-1", type: "add"))
        let undecodable = try await Self.dead { try await client.result(of: "raw-1", timeout: .seconds(60)) }
        #expect(undecodable?.reason == .undecodable, "\(String(describing: undecodable))")

        // Nobody consumes `idle`: the wait ends at its timeout.
        let waiting = try await client.enqueueForResult(name: "add", json: Array("[1]".utf8), options: .init(queue: "idle"))
        do {
            _ = try await waiting.result(timeout: .milliseconds(500))
            Issue.record("a result without a worker")
        } catch let error as SluiceError {
            #expect(error.code == .timedOut)
        }
        try await worker.stop()
        await h.broker.close()
    }

    @Test("a worker SIGKILLed while it runs the task: the task is redelivered, and the waiting producer gets its result")
    func acrossWorkerKill() async throws {
        let h = try await TaskHarness.make()
        let events = try await h.recordEvents()
        let client = TaskClient(broker: h.broker)
        // Long enough that the kill lands while it runs, even on a slow machine.
        let handle = try await client.enqueueForResult(name: "sluice.sleep", json: Array(#"{"seconds":15}"#.utf8), options: .init(queue: "reskill"))
        let arguments = ["worker", "--url", h.url, "--prefix", h.topology.prefix, "--queue", "reskill", "--log-level", "warning", "--started-events"]
        let first = try SluiceBinary.start(arguments)
        defer { SluiceBinary.stopIfRunning(first) }
        _ = try await events.waitUntil("the task to start") { $0.contains { $0.kind == .started && $0.taskID == handle.id } }
        kill(first.processIdentifier, SIGKILL)
        #expect(try await SluiceBinary.exitStatus(of: first) == SIGKILL)
        #expect(await events.outcomes[handle.id] == nil, "killed before the task finished")

        let second = try SluiceBinary.start(arguments)
        defer { SluiceBinary.stopIfRunning(second) }
        let result = try await handle.result(timeout: .seconds(120))
        #expect(result.json == #"{"slept":15.0}"#)
        second.terminate()
        #expect(try await SluiceBinary.exitStatus(of: second) == 0)
        await h.broker.close()
    }

    @Test("pika waits for a result through direct reply-to, as docs/wire-format.md shows")
    func pikaWaits() async throws {
        let h = try await TaskHarness.make()
        try await h.broker.prepare(queues: ["respika"])
        let registry = Self.adding
        let worker = h.startWorker(queues: ["respika"], registry: registry)
        let python = """
        import json, sys, uuid, pika
        connection = pika.BlockingConnection(pika.URLParameters(sys.argv[1]))
        channel = connection.channel()
        outcome = {}
        def on_reply(ch, method, properties, body):
            outcome["reply"] = json.loads(body)
            ch.stop_consuming()
        # Direct reply-to: consume the pseudo-queue (no ack) before publishing on the same channel.
        channel.basic_consume("amq.rabbitmq.reply-to", on_reply, auto_ack=True)
        channel.confirm_delivery()
        task_id = str(uuid.uuid4())
        channel.basic_publish(
            exchange=sys.argv[2] + ".tasks", routing_key="respika", body=json.dumps([20, 22]),
            properties=pika.BasicProperties(
                message_id=task_id, type="add", content_type="application/json", delivery_mode=2,
                reply_to="amq.rabbitmq.reply-to", headers={"sluice-version": 1}),
            mandatory=True)
        connection.call_later(60, channel.stop_consuming)
        channel.start_consuming()
        reply = outcome.get("reply")
        assert reply is not None, "no reply within 60 s"
        assert reply["taskID"] == task_id, reply
        print(reply["kind"], reply.get("result"))
        connection.close()
        """
        let pika = try SluiceBinary.start(executable: "/usr/bin/python3", ["-c", python, h.url, h.topology.prefix])
        #expect(try await SluiceBinary.exitStatus(of: pika) == 0, "\(SluiceBinary.logTail(of: pika))")
        #expect(SluiceBinary.log(of: pika)?.contains("succeeded 42") == true, "\(SluiceBinary.logTail(of: pika))")
        try await worker.stop()
        await h.broker.close()
    }

    @Test("sluice enqueue --wait prints the result and exits 0; 1 for a dead task; 124 when nothing answers in time")
    func enqueueWait() async throws {
        let h = try await TaskHarness.make()
        let worker = try SluiceBinary.start(["worker", "--url", h.url, "--prefix", h.topology.prefix, "--queue", "reswait", "--log-level", "warning"])
        defer { SluiceBinary.stopIfRunning(worker) }
        let common = ["--url", h.url, "--prefix", h.topology.prefix, "--queue", "reswait"]
        let echo = try await within(120, "sluice enqueue --wait") {
            try await SluiceBinary.run(["enqueue", "sluice.echo", "--args", #"{"x":[1,2]}"#, "--wait", "--json"] + common)
        }
        #expect(echo.status == 0, "\(echo.output)")
        #expect(echo.output.contains(#""status" : "succeeded""#), "\(echo.output)")
        #expect(echo.output.contains(#""x" : ["#), "the result as JSON: \(echo.output)")

        let fail = try await within(120, "sluice enqueue --wait of a failing task") {
            try await SluiceBinary.run(["enqueue", "sluice.fail", "--attempts", "1", "--wait"] + common)
        }
        #expect(fail.status == 1, "\(fail.output)")
        #expect(fail.output.contains("dead: task sluice.fail"), "\(fail.output)")
        #expect(fail.output.contains("max_attempts"), "\(fail.output)")

        let idle = try await within(120, "sluice enqueue --wait with nobody consuming") {
            try await SluiceBinary.run(["enqueue", "sluice.echo", "--wait", "--timeout", "500ms", "--url", h.url, "--prefix", h.topology.prefix,
                                        "--queue", "nobody"])
        }
        #expect(idle.status == 124, "\(idle.output)")
        worker.terminate()
        #expect(try await SluiceBinary.exitStatus(of: worker) == 0)
        await h.broker.close()
    }

    @Test("the producer's connection closed by the broker while its task runs: it reconnects, and the result still arrives")
    func acrossProducerReconnect() async throws {
        let h = try await TaskHarness.make()
        let name = "result-reconnect-\(UInt32.random(in: 0...UInt32.max))"
        let producer = try await RabbitMQBroker.connect(url: AMQPURL(h.url), topology: h.topology, connectionName: name)
        let events = producer.connection.events()
        let client = TaskClient(broker: producer)
        // The task runs until the test lets it finish: after the producer has reconnected.
        let started = OneShotSignal(), release = OneShotSignal()
        var registry = HandlerRegistry()
        registry.register("gate") { _ in
            started.fire()
            await release.wait()
            return Array(#""done""#.utf8)
        }
        let worker = h.startWorker(queues: ["resreconnect"], registry: registry)  // on the harness' own connection
        let handle = try await client.enqueueForResult(name: "gate", json: Array("{}".utf8), options: .init(queue: "resreconnect"))
        try await within(60, "the task to start") { await started.wait() }

        // The broker closes the producer's connection (as a node restart or a network cut would).
        #expect(try await SharedBroker.closeConnection(named: name, why: "result across a reconnect", awaiting: events))
        release.fire()
        let result = try await handle.result(timeout: .seconds(120))
        #expect(result.json == #""done""#)
        try await worker.stop()
        await producer.close()
        await h.broker.close()
    }

    @Test("replies that cannot be delivered never undo a success: a full reply queue nacks it, a bogus direct reply-to address returns it; each task runs once and is acked")
    func refusedReplies() async throws {
        let h = try await TaskHarness.make()
        let runs = Mutex(0)
        var registry = HandlerRegistry()
        registry.register("count") { _ in
            runs.withLock { $0 += 1 }
            return nil
        }
        // A reply queue that refuses every message (a producer could declare one).
        let full = h.topology.replyQueue("full")
        let channel = try await h.broker.connection.openChannel()
        _ = try await channel.queueDeclare(QueueDeclaration(name: full, durable: false, arguments: [
            "x-max-length": .int64(0), "x-overflow": "reject-publish"]))
        try await channel.close()
        try await h.broker.prepare(queues: ["resrefused"])
        let worker = h.startWorker(queues: ["resrefused"], registry: registry)
        let client = TaskClient(broker: h.broker)
        _ = try await client.enqueue(name: "count", json: Array("{}".utf8), options: .init(queue: "resrefused", replyTo: full))
        try await h.publishRaw(queue: "resrefused", body: Array("{}".utf8),
                               properties: BasicProperties(replyTo: "amq.rabbitmq.reply-to.garbage", messageId: "bogus-1", type: "count"))
        try await within(60, "both tasks to be processed") {
            while worker.worker.stats.processed < 2 { try await Task.sleep(for: .milliseconds(20)) }
        }
        // A reply refused by the broker does not requeue the delivery: both acked as succeeded, each run once.
        #expect(worker.worker.stats.succeeded == 2)
        #expect(runs.withLock { $0 } == 2)
        try await worker.stop()
        try await h.waitForReady("resrefused", count: 0)
        #expect(runs.withLock { $0 } == 2)
        await h.broker.close()
    }

    @Test("a task that kills every worker that takes it: RabbitMQ dead-letters it at the delivery limit, and the waiting producer learns it (delivery_limit)")
    func deliveryLimit() async throws {
        let h = try await TaskHarness.make(deliveryLimit: 2)
        let client = TaskClient(broker: h.broker)
        let handle = try await client.enqueueForResult(name: "sluice.crash", json: Array("{}".utf8), options: .init(queue: "rescrash"))
        // Each worker process dies on the task; the third return exceeds the limit (2).
        for run in 1...3 {
            let (status, output) = try await within(60, "worker run \(run)") {
                try await SluiceBinary.run(["worker", "--url", h.url, "--prefix", h.topology.prefix, "--delivery-limit", "2",
                                            "--queue", "rescrash", "--log-level", "warning"])
            }
            #expect(status == 70, "run \(run): the worker should die on sluice.crash: \(output)")
        }
        let failed = try await Self.dead { try await handle.result(timeout: .seconds(60)) }
        #expect(failed?.reason == .deliveryLimit, "\(String(describing: failed))")
        #expect(failed?.taskID == handle.id)
        await h.broker.close()
    }
}
