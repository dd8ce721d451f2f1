import Synchronization

/// A wake-up for the outbox relay: a signal while nobody waits is kept for the next wait.
final class Wake: Sendable {
    private struct State {
        var pending = false
        var waiter: (id: UInt64, continuation: CheckedContinuation<Void, Never>)?
        var lastID: UInt64 = 0
        /// A wait whose time ran out before it began waiting: it returns at once.
        var expired: UInt64 = 0
    }
    private let state = Mutex(State())

    func signal() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.waiter {
                s.waiter = nil
                return w.continuation
            }
            s.pending = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns at the next signal, after `timeout`, or when its task is cancelled. (Each wait has an id,
    /// so that a timer that fires before its wait has begun still ends it:
    /// a task group of a waiter and a sleep could leave the waiter to wait
    /// for a signal that never came.)
    func wait(upTo timeout: Duration) async {
        let id = state.withLock { s -> UInt64 in
            s.lastID += 1
            return s.lastID
        }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled { self.expire(id) }
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.pending {
                        s.pending = false
                        return true
                    }
                    if s.expired == id { return true }
                    s.waiter = (id, continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            self.expire(id)
        }
        timer.cancel()
    }

    private func expire(_ id: UInt64) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.waiter, w.id == id {
                s.waiter = nil
                return w.continuation
            }
            s.expired = id
            return nil
        }
        waiter?.resume()
    }
}
