import Synchronization

/// A wake-up for the outbox relay: a signal while nobody waits is kept for the next wait.
final class Wake: Sendable {
    private struct State {
        var pending = false
        var waiter: (id: UInt64, continuation: CheckedContinuation<Bool, Never>)?
        var lastID: UInt64 = 0
        /// A wait whose time ran out before it began waiting: it returns at once.
        var expired: UInt64 = 0
    }
    private let state = Mutex(State())

    func signal() {
        let waiter = state.withLock { s -> CheckedContinuation<Bool, Never>? in
            if let w = s.waiter {
                s.waiter = nil
                return w.continuation
            }
            s.pending = true
            return nil
        }
        waiter?.resume(returning: true)
    }

    /// Returns at the next signal (true), after `timeout` or when its task
    /// is cancelled (false). (Each wait has an id,
    /// so that a timer that fires before its wait has begun still ends it:
    /// a task group of a waiter and a sleep could leave the waiter to wait
    /// for a signal that never came.)
    @discardableResult
    func wait(upTo timeout: Duration) async -> Bool {
        let id = state.withLock { s -> UInt64 in
            s.lastID += 1
            return s.lastID
        }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled { self.expire(id) }
        }
        let signaled = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let now = state.withLock { s -> Bool? in
                    if s.pending {
                        s.pending = false
                        return true
                    }
                    if s.expired == id { return false }
                    s.waiter = (id, continuation)
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            self.expire(id)
        }
        timer.cancel()
        return signaled
    }

    private func expire(_ id: UInt64) {
        let waiter = state.withLock { s -> CheckedContinuation<Bool, Never>? in
            if let w = s.waiter, w.id == id {
                s.waiter = nil
                return w.continuation
            }
            // A late timer of an earlier wait must not undo a later one's expiry.
            s.expired = max(s.expired, id)
            return nil
        }
        waiter?.resume(returning: false)
    }
}
