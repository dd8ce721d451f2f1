import SluiceClient
import SluiceCore
import SluiceRabbitMQ
import SluiceTesting
import Testing

@Suite("A burst of first enqueues on a new client")
struct FirstEnqueueBurstTests {
    @Test("3,000 enqueues at once on a new client all land: the queue is declared once, not on a channel per call (a connection has 2,047)")
    func burstOfFirstEnqueues() async throws {
        let h = try await TaskHarness.make(connectionName: "first-enqueue-burst")
        defer { Task { [broker = h.broker] in await broker.close() } }
        let client = TaskClient(broker: h.broker)
        let queue = "first-burst"
        let calls = 3000
        let failures = try await within(120, "\(calls) enqueues") {
            await withTaskGroup(of: String?.self) { group in
                for _ in 0..<calls {
                    group.addTask {
                        do {
                            _ = try await client.enqueue(name: "burst", json: Array("{}".utf8), options: EnqueueOptions(queue: queue))
                            return nil
                        } catch {
                            return "\(error)"
                        }
                    }
                }
                var failures: [String] = []
                for await failure in group { if let failure { failures.append(failure) } }
                return failures
            }
        }
        #expect(failures.isEmpty, "\(failures.count) enqueues failed, the first: \(failures.first ?? "")")
        try await h.waitForReady(queue, count: calls, seconds: 60)
    }
}
