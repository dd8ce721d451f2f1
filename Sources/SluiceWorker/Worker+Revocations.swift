#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import SluiceCore

extension Worker {
    /// Follows the revocation stream until cancelled: applies each entry,
    /// stops running handlers a `terminate` names, and fires `caughtUp` when
    /// the marker it published after subscribing comes back (every entry
    /// before it is then known). A lost stream is followed again from its
    /// first entry, after a pause that grows while it keeps failing (a
    /// stream whose node is down can take a while to be served again).
    func followRevocations(running: RunningTasks, caughtUp: ShutdownSignal) async {
        var undecodable = 0
        var failures = 0
        while !Task.isCancelled {
            do {
                try await broker.prepareRevocations()
                let consumer = try await broker.followRevocations(prefetch: 1000)
                do {
                    try await follow(consumer, running: running, caughtUp: caughtUp, undecodable: &undecodable)
                } catch {
                    await consumer.close()
                    throw error
                }
                await consumer.close()
                failures = 0
            } catch is CancellationError {
                return
            } catch {
                failures += 1
                logger.warning("cannot follow the revocation stream; trying again",
                               metadata: ["error": "\(error)", "attempt": "\(failures)"])
            }
            try? await Task.sleep(for: .seconds(min(15, 1 << min(failures, 4))))
        }
    }

    private func follow(_ consumer: BrokerConsumer, running: RunningTasks, caughtUp: ShutdownSignal,
                        undecodable: inout Int) async throws {
        let marker = "\(configuration.workerID)/\(UUID().uuidString)"
        try await broker.publish(broker.topology.revocationMessage(Revocation(marker: marker)))
        for try await delivery in consumer {
            // Acknowledging a stream entry only grants credit for the next ones.
            try? await delivery.ack()
            guard let revocation = try? Revocation.decode(delivery.body) else {
                undecodable += 1
                if undecodable == 1 || undecodable % 1000 == 0 {
                    logger.warning("an entry of the revocation stream is not a revocation; ignored",
                                   metadata: ["count": "\(undecodable)"])
                }
                continue
            }
            if revocation.marker == marker {
                caughtUp.fire()
                continue
            }
            for id in revocations.apply(revocation) where running.terminate(taskID: id) {
                logger.info("a revocation stops a running task", metadata: ["task.id": "\(id)"])
            }
        }
    }
}
