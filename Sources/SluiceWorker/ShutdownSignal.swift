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
        /// The task id each running handler runs (``handlerStarting(taskID:)``), both ways.
        var byTaskID: [String: Int] = [:]
        var taskIDs: [Int: String] = [:]
        /// Tasks a revocation with `terminate` cancelled.
        var terminated: Set<Int> = []
        /// Whether ``cancelAll()`` has run (shutdown past its grace).
        var allCancelled = false
        /// Deliveries settling after their task ended (``settlementStarted()``).
        var settlementsPending = 0

        var isEmpty: Bool { running.isEmpty && settlementsPending == 0 }

        mutating func takeEmptied() -> [CheckedContinuation<Void, Never>] {
            let w = emptied
            emptied = []
            return w
        }
    }

    /// What a task whose handler returned does with the outcome.
    enum Verdict {
        /// Settle it.
        case settle
        /// Shutdown cancelled the handler: hand the delivery back.
        case handBack
        /// A revocation cancelled the handler: settle it as revoked (in a
        /// task that is not cancelled, see ``Worker``).
        case revoked
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
    static func markSettling() -> Verdict {
        guard let (tasks, id) = current else { return .settle }
        return tasks.tasks.withLock { t in
            if t.cancelled.contains(id) { return .handBack }
            t.settling.insert(id)
            return t.terminated.contains(id) ? .revoked : .settle
        }
    }

    /// Called by a task that retries in place (it waits, then runs its
    /// handler again): shutdown may cancel it again. False if shutdown
    /// already cancelled it (hand the delivery back).
    static func markRunningAgain() -> Bool {
        guard let (tasks, id) = current else { return true }
        return tasks.tasks.withLock { t in
            // Shutdown cancelled every handler while this one was settling: it does not run again.
            guard !t.allCancelled, !t.cancelled.contains(id) else { return false }
            t.settling.remove(id)
            return true
        }
    }

    /// Called by a task as its handler starts: a revocation with
    /// `terminate` can now find it by the task's id.
    static func handlerStarting(taskID: String) {
        guard let (tasks, id) = current else { return }
        tasks.tasks.withLock { t in
            t.byTaskID[taskID] = id
            t.taskIDs[id] = taskID
        }
    }

    /// Cancels the handler running task `taskID`, unless it has returned
    /// (its outcome is being published) or none runs it here; true if it did.
    @discardableResult
    func terminate(taskID: String) -> Bool {
        let victim = tasks.withLock { t -> Task<Void, Never>? in
            guard let id = t.byTaskID[taskID], !t.settling.contains(id), !t.cancelled.contains(id),
                  t.terminated.insert(id).inserted else { return nil }
            return t.running[id]
        }
        victim?.cancel()
        return victim != nil
    }

    private func finish(_ id: Int) {
        let waiters = tasks.withLock { t -> [CheckedContinuation<Void, Never>] in
            t.running.removeValue(forKey: id)
            t.settling.remove(id)
            t.cancelled.remove(id)
            if let taskID = t.taskIDs.removeValue(forKey: id) {
                // A redelivered copy may run the same id under another entry meanwhile.
                if t.byTaskID[taskID] == id { t.byTaskID[taskID] = nil }
                t.terminated.remove(id)
            }
            return t.isEmpty ? t.takeEmptied() : []
        }
        for w in waiters { w.resume() }
    }

    /// A delivery goes on settling after its task ends (its outcome waits
    /// in a pack, acknowledged once that is confirmed): until
    /// ``settlementEnded()``, shutdown waits for it as for a running task.
    /// Never cancelled: its handler has returned.
    func settlementStarted() {
        tasks.withLock { $0.settlementsPending += 1 }
    }

    func settlementEnded() {
        let waiters = tasks.withLock { t -> [CheckedContinuation<Void, Never>] in
            t.settlementsPending -= 1
            return t.isEmpty ? t.takeEmptied() : []
        }
        for w in waiters { w.resume() }
    }

    /// Returns when no task runs, or when the calling task is cancelled.
    func waitUntilEmpty() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = tasks.withLock { t -> Bool in
                    if t.isEmpty || Task.isCancelled { return true }
                    t.emptied.append(c)
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            let waiters = tasks.withLock { $0.takeEmptied() }
            for w in waiters { w.resume() }
        }
    }

    /// Tasks running.
    var count: Int { tasks.withLock { $0.running.count } }

    /// Deliveries settling after their task ended (``settlementStarted()``).
    var settlementsPending: Int { tasks.withLock { $0.settlementsPending } }

    /// No task runs and no delivery waits to be settled.
    var isIdle: Bool { tasks.withLock { $0.isEmpty } }


    /// Cancels every task that is still in its handler.
    func cancelAll() {
        let victims = tasks.withLock { t -> [Task<Void, Never>] in
            t.allCancelled = true
            let ids = t.running.keys.filter { !t.settling.contains($0) && !t.terminated.contains($0) }
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
