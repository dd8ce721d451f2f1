import Logging
import SluiceCore

extension Worker {
    /// Reads an event subscription (heartbeats, pings) until cancelled, and
    /// subscribes again whenever it ends: backing off from 0.5 s to 10 s,
    /// starting over after a subscription that delivered. `first`: one made
    /// already; `what`: for the log, at `level`. Every subscription goes
    /// through the cancellation handler, which cancels it at once if the
    /// task was cancelled meanwhile, so none outlives the worker.
    func followEvents(_ bindings: [String], first: BrokerConsumer? = nil, what: String, level: Logger.Level,
                      _ handle: (BrokerDelivery) async -> Void) async {
        var wait = Duration.milliseconds(500)
        /// Waits, doubling the next wait; false once cancelled.
        func backOff() async -> Bool {
            guard (try? await Task.sleep(for: wait)) != nil else { return false }
            wait = min(wait * 2, .seconds(10))
            return true
        }
        var made = first
        while true {
            let subscription: BrokerConsumer
            if let made { subscription = made } else {
                do {
                    subscription = try await broker.subscribeEvents(bindings: bindings)
                } catch {
                    if Task.isCancelled { return }
                    logger.log(level: level, "could not subscribe to \(what); retrying", metadata: ["error": "\(error)"])
                    guard await backOff() else { return }
                    continue
                }
            }
            made = nil
            var heard = false
            var ended: (any Error)?
            do {
                try await withTaskCancellationHandler {
                    for try await delivery in subscription {
                        heard = true
                        await handle(delivery)
                    }
                } onCancel: {
                    Task { try? await subscription.cancel() }
                }
            } catch {
                ended = error
            }
            // Closed whatever ended it (the broker may have cancelled the
            // consumer only, and a cancel arriving just now finds the handler gone).
            await Task { try? await subscription.cancel() }.value
            if Task.isCancelled { return }
            logger.log(level: level, "\(what) stopped coming; subscribing again", metadata: ended.map { ["error": "\($0)"] } ?? [:])
            if heard { wait = .milliseconds(500) }
            guard await backOff() else { return }
        }
    }
}
