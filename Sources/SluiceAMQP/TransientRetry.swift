public import Logging
import SluiceWire

/// Runs an idempotent operation again while it fails for a transient reason
/// (``AMQPError/isTransient``), with capped backoff, for at most `budget`.
///
/// For what a process does once at start (declaring its topology): a quorum
/// queue whose replicas did not start in time on a busy broker answers 541
/// `cluster_not_formed`, and a connection lost midway recovers by itself, so
/// waiting beats exiting. Any other error, or the last one after `budget`,
/// is thrown.
public enum TransientRetry {
    public static func run<T>(_ what: String, budget: Duration, logger: Logger = Logger(label: "sluice.amqp"),
                              backoff: ReconnectBackoff = ReconnectBackoff(initial: .milliseconds(200), maximum: .seconds(5)),
                              _ body: () async throws -> T) async throws -> T {
        var backoff = backoff
        let deadline = ContinuousClock.now + budget
        var attempt = 1
        while true {
            do {
                return try await body()
            } catch let error as AMQPError where error.isTransient && ContinuousClock.now < deadline {
                logger.warning("\(what) failed; trying again", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                attempt += 1
                try await Task.sleep(for: backoff.nextDelay())
            }
        }
    }
}
