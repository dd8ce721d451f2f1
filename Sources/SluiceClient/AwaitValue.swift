import SluiceCore
import Synchronization

/// The value of a shared task, waited for until `deadline` (nil: no limit)
/// or until the waiting task is cancelled, whichever comes first, without
/// cancelling the shared task: others may still want it. Throws
/// `SluiceError` `timed_out` at the deadline.
func value<T: Sendable>(of shared: Task<T, any Error>, until deadline: ContinuousClock.Instant?, what: String) async throws -> T {
    let outcome = OneOutcome<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            outcome.set(continuation)
            let watchers = [
                Task { outcome.resume(await shared.result) },
                deadline.map { deadline in
                    Task {
                        guard (try? await Task.sleep(until: deadline)) != nil else { return }
                        outcome.resume(.failure(SluiceError(.timedOut, "\(what) was not ready in time")))
                    }
                },
            ].compactMap { $0 }
            outcome.onResume { for watcher in watchers { watcher.cancel() } }
            if Task.isCancelled { outcome.resume(.failure(CancellationError())) }
        }
    } onCancel: {
        outcome.resume(.failure(CancellationError()))
    }
}

/// A continuation resumed once, by whichever outcome comes first (also one
/// that comes before the continuation is set).
private final class OneOutcome<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var early: Result<T, any Error>?
        var done = false
        var cleanup: (@Sendable () -> Void)?
    }

    private let state = Mutex(State())

    func set(_ continuation: CheckedContinuation<T, any Error>) {
        let early = state.withLock { s -> Result<T, any Error>? in
            guard let early = s.early else {
                s.continuation = continuation
                return nil
            }
            s.early = nil
            return early
        }
        if let early { continuation.resume(with: early) }
    }

    func onResume(_ cleanup: @escaping @Sendable () -> Void) {
        let now = state.withLock { s -> Bool in
            if s.done { return true }
            s.cleanup = cleanup
            return false
        }
        if now { cleanup() }
    }

    func resume(_ result: Result<T, any Error>) {
        let (continuation, cleanup) = state.withLock { s -> (CheckedContinuation<T, any Error>?, (@Sendable () -> Void)?) in
            guard !s.done else { return (nil, nil) }
            s.done = true
            defer { s.continuation = nil; s.cleanup = nil }
            if s.continuation == nil { s.early = result }
            return (s.continuation, s.cleanup)
        }
        continuation?.resume(with: result)
        cleanup?()
    }
}
