import SluiceAMQP
import SluiceWire
import Synchronization
import Testing

@Suite("Transient failures: which they are, and trying again")
struct TransientRetryTests {
    static let notFormed = AMQPError(.connectionClosedByBroker, operation: "queue.declare q.delay.1000",
                                     message: "the broker closed the connection", replyCode: 541,
                                     replyText: "INTERNAL_ERROR - Cannot declare quorum queue 'q.delay.1000': cluster_not_formed")
    static let refused = AMQPError(.channelClosedByBroker, operation: "queue.declare q", message: "the broker closed the channel",
                                   replyCode: 406, replyText: "PRECONDITION_FAILED - inequivalent arg 'x-queue-type'")
    static let quick = ReconnectBackoff(initial: .milliseconds(1), maximum: .milliseconds(2))

    @Test("lost connections, timeouts, 541 and 320 are transient; refusals and our own closes are not")
    func classification() {
        #expect(Self.notFormed.isTransient)
        #expect(AMQPError(.connectionLost, operation: "x", message: "socket").isTransient)
        #expect(AMQPError(.timeout, operation: "x", message: "slow").isTransient)
        #expect(AMQPError(.connectionClosedByBroker, operation: "x", message: "shutdown", replyCode: 320).isTransient)
        #expect(AMQPError(.channelClosedByBroker, operation: "x", message: "internal", replyCode: 541).isTransient)
        #expect(!Self.refused.isTransient)
        #expect(!AMQPError(.channelClosedByBroker, operation: "x", message: "no queue", replyCode: 404).isTransient)
        #expect(!AMQPError(.accessRefused, operation: "x", message: "no", replyCode: 403).isTransient)
        #expect(!AMQPError(.connectionClosed, operation: "x", message: "closed here").isTransient)
        #expect(!AMQPError(.unencodable, operation: "x", message: "too big").isTransient)
    }

    @Test("transient failures are tried again until the operation succeeds")
    func retriesUntilSuccess() async throws {
        let calls = Mutex(0)
        let value = try await TransientRetry.run("declaring", budget: .seconds(30), backoff: Self.quick) {
            let n = calls.withLock { $0 += 1; return $0 }
            if n < 3 { throw Self.notFormed }
            return n
        }
        #expect(value == 3)
    }

    @Test("a refusal is thrown at once, and a transient failure once the budget is spent")
    func givesUp() async throws {
        let calls = Mutex(0)
        await #expect(throws: AMQPError.self) {
            try await TransientRetry.run("declaring", budget: .seconds(30), backoff: Self.quick) {
                calls.withLock { $0 += 1 }
                throw Self.refused
            }
        }
        #expect(calls.withLock { $0 } == 1, "a refusal would repeat: no second try")
        calls.withLock { $0 = 0 }
        do {
            try await TransientRetry.run("declaring", budget: .milliseconds(50), backoff: Self.quick) {
                calls.withLock { $0 += 1 }
                throw Self.notFormed
            }
            Issue.record("an operation that always fails succeeded")
        } catch let error as AMQPError {
            #expect(error.replyCode == 541, "the last failure is what is thrown")
        }
        #expect(calls.withLock { $0 } > 1)
    }
}
