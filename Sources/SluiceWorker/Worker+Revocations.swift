import Foundation
import Logging
import SluiceCore

extension Worker {
    /// Follows the revocation stream until cancelled: applies each entry,
    /// stops running handlers a `terminate` names, and fires `caughtUp` when
    /// the marker it published after subscribing comes back (every entry
    /// before it is then known). A lost stream is followed again from its
    /// first entry a second later.
    func followRevocations(running: RunningTasks, caughtUp: ShutdownSignal) async {
        var undecodable = 0
        while !Task.isCancelled {
            do {
                try await broker.prepareRevocations()
                let consumer = try await broker.followRevocations(prefetch: 1000)
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
                await consumer.close()
            } catch is CancellationError {
                return
            } catch {
                logger.warning("cannot follow the revocation stream; trying again", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
