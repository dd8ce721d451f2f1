import Synchronization

/// Runs work in a task of its own and waits for it for a limited time.
/// Unlike a task group, it does not wait for work that ignores cancellation
/// (a database driver stuck on a dead connection): on time-out, or when the
/// caller is cancelled, the work is cancelled and left behind.
enum Abandonable {
    enum Outcome<T: Sendable>: Sendable {
        case finished(Result<T, any Error>)
        case timedOut
        case cancelled
    }

    static func run<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async -> Outcome<T> {
        let waiter = Waiter<T>()
        let work = Task {
            let result: Result<T, any Error>
            do { result = .success(try await body()) } catch { result = .failure(error) }
            waiter.settle(.finished(result))
        }
        let timer = Task {
            try? await Task.sleep(for: limit)
            waiter.settle(.timedOut)
        }
        let outcome = await withTaskCancellationHandler {
            await waiter.wait()
        } onCancel: {
            waiter.settle(.cancelled)
        }
        timer.cancel()
        if case .finished = outcome {} else { work.cancel() }
        return outcome
    }

    /// The first outcome settled wins; `wait` returns it, whether it came before or after.
    private final class Waiter<T: Sendable>: Sendable {
        private struct State {
            var outcome: Outcome<T>?
            var continuation: CheckedContinuation<Outcome<T>, Never>?
        }
        private let state = Mutex(State())

        func settle(_ outcome: Outcome<T>) {
            let waiting = state.withLock { s -> CheckedContinuation<Outcome<T>, Never>? in
                guard s.outcome == nil else { return nil }
                s.outcome = outcome
                defer { s.continuation = nil }
                return s.continuation
            }
            waiting?.resume(returning: outcome)
        }

        func wait() async -> Outcome<T> {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { s -> Outcome<T>? in
                    if let outcome = s.outcome { return outcome }
                    s.continuation = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }
}
