import Synchronization

/// A one-shot signal that tasks can await (no polling).
final class ShutdownSignal: Sendable {
    private let state = Mutex<(fired: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    var isFired: Bool { state.withLock { $0.fired } }

    func fire() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            if s.fired { return [] }
            s.fired = true
            let w = s.waiters
            s.waiters = []
            return w
        }
        for w in waiters { w.resume() }
    }

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { s -> Bool in
                if s.fired { return true }
                s.waiters.append(c)
                return false
            }
            if resumeNow { c.resume() }
        }
    }
}

/// The handler tasks currently running, so that shutdown can wait for or cancel them.
final class RunningTasks: Sendable {
    private struct State {
        var next = 0
        var running: [Int: Task<Void, Never>] = [:]
        var emptied: [CheckedContinuation<Void, Never>] = []
        /// Tasks past their handler, publishing the outcome: never cancelled.
        var settling: Set<Int> = []
        /// Tasks `cancelAll` cancelled.
        var cancelled: Set<Int> = []
    }

    private let tasks = Mutex(State())

    /// The running task's id in its `RunningTasks`, for ``markSettling()``.
    @TaskLocal static var current: (tasks: RunningTasks, id: Int)?

    func start(_ body: @escaping @Sendable () async -> Void) {
        tasks.withLock { t in
            let id = t.next
            t.next += 1
            t.running[id] = Task {
                await RunningTasks.$current.withValue((self, id)) { await body() }
                self.finish(id)
            }
        }
    }

    /// Called by a task whose handler has returned: from now on shutdown
    /// does not cancel it, so its outcome is published and acknowledged
    /// whole. False if shutdown cancelled it first (the outcome must then
    /// be dropped and the delivery handed back).
    static func markSettling() -> Bool {
        guard let (tasks, id) = current else { return true }
        return tasks.tasks.withLock { t in
            if t.cancelled.contains(id) { return false }
            t.settling.insert(id)
            return true
        }
    }

    private func finish(_ id: Int) {
        let waiters = tasks.withLock { t -> [CheckedContinuation<Void, Never>] in
            t.running.removeValue(forKey: id)
            t.settling.remove(id)
            t.cancelled.remove(id)
            guard t.running.isEmpty else { return [] }
            let w = t.emptied
            t.emptied = []
            return w
        }
        for w in waiters { w.resume() }
    }

    /// Returns when no task runs, or when the calling task is cancelled.
    func waitUntilEmpty() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = tasks.withLock { t -> Bool in
                    if t.running.isEmpty || Task.isCancelled { return true }
                    t.emptied.append(c)
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            let waiters = tasks.withLock { t -> [CheckedContinuation<Void, Never>] in
                let w = t.emptied
                t.emptied = []
                return w
            }
            for w in waiters { w.resume() }
        }
    }

    var count: Int { tasks.withLock { $0.running.count } }


    /// Cancels every task that is still in its handler.
    func cancelAll() {
        let victims = tasks.withLock { t -> [Task<Void, Never>] in
            let ids = t.running.keys.filter { !t.settling.contains($0) }
            t.cancelled.formUnion(ids)
            return ids.compactMap { t.running[$0] }
        }
        for task in victims { task.cancel() }
    }
}

/// A counter shared by tasks.
final class SharedCount: Sendable {
    private let value: Mutex<Int>
    init(_ initial: Int) { value = Mutex(initial) }
    /// Subtracts one and returns the new value.
    func decrement() -> Int { value.withLock { $0 -= 1; return $0 } }
}

/// The first error some task reports.
final class FirstError: Sendable {
    private let error = Mutex<(any Error)?>(nil)
    func set(_ e: any Error) { error.withLock { if $0 == nil { $0 = e } } }
    var value: (any Error)? { error.withLock { $0 } }
}
