import Foundation
import Logging
import ServiceLifecycle
import SluiceClient
import SluiceCore
import SluiceWire
@testable import SluiceWorker
import Testing

/// `TaskClient.enqueueForResult` and a worker on the in-memory broker: the
/// producer gets each task's final outcome through its reply queue.
@Suite("Results on the in-memory broker")
struct ResultInMemoryTests {
    struct Add: TaskDefinition {
        struct Arguments: Codable, Sendable { var a: Int; var b: Int }
        static let name = "math.add"
        static let queue = "q"
    }

    /// Runs a worker on queue `q` while `body` runs.
    func withWorker(_ broker: InMemoryBroker, _ registry: HandlerRegistry, _ body: () async throws -> Void) async throws {
        let configuration = Worker.Configuration(queues: ["q"], concurrency: 4, retryPolicy: RetryPolicy(maxAttempts: 3, baseMilliseconds: 0, jitter: 0),
                                                 publishStartedEvents: false)
        try await withInMemoryWorker(broker, registry, configuration, body)
    }

    @Test("a result, a retried task's final result, dead tasks as TaskFailed with their reason, and asking late")
    func outcomes() async throws {
        let broker = InMemoryBroker(topology: try Topology(prefix: "mem"))
        let client = TaskClient(broker: broker)
        var registry = HandlerRegistry()
        registry.register(Add.self) { arguments, _ in arguments.a + arguments.b }
        registry.register("flaky") { c in
            if c.attempt < 3 { throw TaskFailure("not yet") }
            return Array("\"third time\"".utf8)
        }
        registry.register("fatal") { _ in throw TaskFailure(kind: "bad_input", "no such user", retryable: false) }
        registry.register("always") { _ in throw TaskFailure(kind: "smtp", "down") }
        try await withWorker(broker, registry) {
            let sum = try await client.enqueueForResult(Add.self, .init(a: 2, b: 40))
            #expect(try await sum.result(as: Int.self, timeout: .seconds(30)) == 42)

            let flaky = try await client.enqueueForResult(name: "flaky", json: Array("{}".utf8), options: .init(queue: "q"))
            let flakyResult = try await flaky.result(timeout: .seconds(30))
            #expect(flakyResult.attempt == 3, "only the final attempt answers")
            #expect(flakyResult.json == "\"third time\"")

            for (name, reason, type) in [("fatal", DeadReason.nonRetryable, "bad_input"), ("always", .maxAttempts, "smtp"),
                                         ("nobody.handles.this", .unknownTask, "unknown_task")] {
                let handle = try await client.enqueueForResult(name: name, json: Array("{}".utf8), options: .init(queue: "q"))
                do {
                    _ = try await handle.result(timeout: .seconds(30))
                    Issue.record("\(name) succeeded")
                } catch let failed as TaskFailed {
                    #expect(failed.reason == reason, "\(failed)")
                    #expect(failed.errorType == type, "\(failed)")
                    #expect(failed.taskID == handle.id)
                }
            }

            // Asked for after it finished (its reply is on its way or kept).
            let early = try await client.enqueueForResult(Add.self, .init(a: 1, b: 1))
            let earlyID = early.id
            let seen = Task { await broker.waitForEvents { events in events.contains { $0.taskID == earlyID && $0.kind == .succeeded } } }
            let timer = Task { try await Task.sleep(for: .seconds(30)); seen.cancel() }
            #expect(await seen.value, "timed out after 30 s waiting for the task to succeed")
            timer.cancel()
            #expect(try await early.result(as: Int.self, timeout: .seconds(30)) == 2)
        }
    }

    @Test("no outcome within the timeout: timed_out, not a hang; a cancelled wait ends at once")
    func timeout() async throws {
        let broker = InMemoryBroker(topology: try Topology(prefix: "mem"))
        let client = TaskClient(broker: broker)
        // No worker consumes queue `idle`.
        let handle = try await client.enqueueForResult(name: "x", json: Array("{}".utf8), options: .init(queue: "idle"))
        let started = ContinuousClock.now
        do {
            _ = try await handle.result(timeout: .milliseconds(200))
            Issue.record("a result without a worker")
        } catch let error as SluiceError {
            #expect(error.code == .timedOut)
        }
        #expect(ContinuousClock.now - started < .seconds(30), "bounded by the timeout")

        let waiting = Task { try await handle.result(timeout: .seconds(600)) }
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
    }

    @Test("a reply address that is not one of this prefix's reply queues is refused at enqueue")
    func badAddress() async throws {
        let broker = InMemoryBroker(topology: try Topology(prefix: "mem"))
        let client = TaskClient(broker: broker)
        for address in ["mem.q.q", "other.reply.x"] {
            await #expect(throws: SluiceError.self) {
                try await client.enqueue(name: "x", json: Array("{}".utf8), options: .init(queue: "q", replyTo: address))
            }
        }
    }
}
