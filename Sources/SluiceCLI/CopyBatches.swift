/// How `sluice enqueue --count` sends its copies: in batches, the first
/// alone (it declares the queue's topology, and with `--track` the tracking
/// queue, once), then up to `inFlight` batches at a time. A batch that throws
/// (its connection or channel failed) stops the sending: the batches already
/// running finish, and every copy not known to be in counts as failed.
struct CopyBatches {
    /// Copies to send.
    var count: Int
    /// Copies per batch.
    var batch: Int
    /// Batches at a time after the first.
    var inFlight: Int

    /// What one batch did: copies confirmed and copies refused.
    struct BatchOutcome: Sendable {
        var enqueued: Int
        var failed: Int
    }

    struct Summary {
        var enqueued: Int
        /// Refused, lost with a failed batch, or never sent after one.
        var failed: Int
        /// The first error a batch threw; sending stopped at it.
        var stoppedBy: (any Error)?
    }

    /// Sends every batch through `send(n)` and adds up what they did;
    /// `progress(settled)` after each batch.
    func run(send: @escaping @Sendable (Int) async throws -> BatchOutcome,
             progress: (Int) -> Void = { _ in }) async -> Summary {
        var done = 0, failed = 0, sent = 0
        var stoppedBy: (any Error)?
        await withTaskGroup(of: (outcome: BatchOutcome, error: (any Error)?).self) { group in
            var running = 0
            while true {
                let limit = done + failed == 0 ? 1 : max(1, inFlight)
                if stoppedBy == nil, sent < count, running < limit {
                    let n = min(batch, count - sent)
                    sent += n
                    running += 1
                    group.addTask {
                        do {
                            return (try await send(n), nil)
                        } catch {
                            // None of the batch is known to be in.
                            return (BatchOutcome(enqueued: 0, failed: n), error)
                        }
                    }
                    continue
                }
                // Nothing more to send (or an error stopped sending): wait for what runs.
                guard let finished = await group.next() else { break }
                running -= 1
                done += finished.outcome.enqueued
                failed += finished.outcome.failed
                if stoppedBy == nil { stoppedBy = finished.error }
                progress(done + failed)
            }
        }
        return Summary(enqueued: done, failed: failed + count - sent, stoppedBy: stoppedBy)
    }
}
