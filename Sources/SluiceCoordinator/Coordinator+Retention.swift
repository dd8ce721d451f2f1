import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SluiceCore
import SluiceWorkflow
import Synchronization

/// Deleting finished runs past the retention period.
extension Coordinator {
    /// Deletes finished runs older than `retention`, in batches, at start and
    /// then every quarter of it (at least every second, at most every 10 minutes).
    func pruneRuns(keeping retention: Duration) async throws {
        let every = min(max(retention / 4, .seconds(1)), .seconds(600))
        let pruned = Counter(label: "sluice_workflow_runs_pruned_total")
        while true {
            do {
                var total = 0
                while true {
                    let cutoff = Date().addingTimeInterval(-retention.timeInterval)
                    let count = try await engine.pruneRuns(finishedBefore: cutoff, limit: 500)
                    total += count
                    if count < 500 { break }
                }
                if total > 0 {
                    pruned.increment(by: total)
                    logger.info("deleted finished runs past their retention", metadata: ["count": "\(total)", "retention": "\(retention)"])
                }
            } catch where Self.isLeaseLoss(error) || error is CancellationError {
                throw error
            } catch {
                logger.warning("could not delete old runs; trying again later", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: every)
        }
    }
}
