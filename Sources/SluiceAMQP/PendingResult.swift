import Synchronization

/// One async caller waiting for its connection thread to answer.
///
/// Resumed exactly once: by the thread with a result, or early by the caller's
/// cancellation. Whatever comes second is ignored, so a cancelled caller can
/// never be resumed twice and a late answer never crashes. A result that
/// arrives before the caller starts waiting is kept for it.
final class PendingResult<Value: Sendable>: Sendable {
    private enum State {
        case idle
        case waiting(CheckedContinuation<Value, any Error>)
        case resolvedEarly(Result<Value, any Error>)
        case done
    }

    private let state = Mutex<State>(.idle)

    /// True once resumed or cancelled; the thread skips work nobody awaits.
    var isSettled: Bool {
        state.withLock {
            switch $0 {
            case .idle, .waiting: false
            case .resolvedEarly, .done: true
            }
        }
    }

    func install(_ continuation: CheckedContinuation<Value, any Error>) {
        let early = state.withLock { state -> Result<Value, any Error>? in
            if case .resolvedEarly(let result) = state {
                state = .done
                return result
            }
            state = .waiting(continuation)
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    /// False when the caller was already resumed (cancelled): the result
    /// is dropped, and whatever it holds is the thread's to undo.
    @discardableResult
    func resume(with result: Result<Value, any Error>) -> Bool {
        let (continuation, taken) = state.withLock { state -> (CheckedContinuation<Value, any Error>?, Bool) in
            switch state {
            case .idle:
                state = .resolvedEarly(result)
                return (nil, true)
            case .waiting(let c):
                state = .done
                return (c, true)
            case .resolvedEarly, .done:
                return (nil, false)
            }
        }
        continuation?.resume(with: result)
        return taken
    }

    @discardableResult
    func succeed(_ value: Value) -> Bool { resume(with: .success(value)) }
    func fail(_ error: any Error) { resume(with: .failure(error)) }

    /// The caller's task was cancelled.
    func cancel() { resume(with: .failure(CancellationError())) }
}
