import Foundation

/// Sagas: when a run fails or is cancelled, the compensations of the steps
/// whose work completed run one step after another, the last completed
/// first; a map step's compensation runs for each succeeded element (from
/// the last element down, up to the map's parallelism at once). Compensable
/// steps still running are waited for first: their outcome decides whether
/// they need undoing. A compensation that fails for good stops the rest.
extension WorkflowStateMachine {
    /// What the task id of a compensation ends with (after the id of the step's task, or element's).
    static let undoSuffix = "/~undo"

    /// Records that a compensable step's work (or one of a map's elements) completed.
    mutating func noteCompletedWork(_ id: String) {
        guard stepsByID[id]?.compensation != nil else { return }
        var list = state.completedWork ?? []
        guard list.last != id else { return }
        list.removeAll { $0 == id }
        list.append(id)
        state.completedWork = list
    }

    /// Whether ending the run now leaves work to undo: a compensable step completed, or is still running.
    mutating func hasWorkToCompensate() -> Bool {
        if state.completedWork?.contains(where: hasWorkToUndo) == true { return true }
        return compensableWorkRunning()
    }

    /// Whether a compensable step (or element) is running. A map decided
    /// early (failFast, atLeast) may still have elements running.
    mutating func compensableWorkRunning() -> Bool {
        for step in definition.steps where step.compensation != nil {
            switch step.kind {
            case .task: if state.steps[step.id]?.status == .running { return true }
            case .map: if state.steps[step.id]?.elements != nil, progress(ofMap: step.id).running > 0 { return true }
            default: continue
            }
        }
        return false
    }

    /// Whether step `id` has completed work: a task step that succeeded, a map with a succeeded element.
    func hasWorkToUndo(_ id: String) -> Bool {
        guard let step = state.steps[id] else { return false }
        switch stepsByID[id]?.kind {
        case .task?: return step.status == .succeeded
        case .map?: return step.elements?.contains { $0.status == .succeeded } == true
        default: return false
        }
    }

    /// Starts compensating instead of ending the run, if there is work to undo; true if it did.
    mutating func beginCompensation(cause: RunState.Status, at: Date) -> Bool {
        guard hasWorkToCompensate() else { return false }
        state.status = .compensating
        state.compensation = RunState.Compensation(cause: cause)
        state.finishedAt = nil
        return true
    }

    /// Moves the compensation on: once nothing compensable runs, fixes the
    /// order, then starts (or fills) the current step's compensation and
    /// ends the run when all are done or one failed.
    mutating func advanceCompensation(at: Date, _ out: inout Output) {
        guard state.status == .compensating, var compensation = state.compensation else { return }
        if compensation.order == nil {
            guard !compensableWorkRunning() else { return }
            compensation.order = (state.completedWork ?? []).reversed().filter(hasWorkToUndo)
            state.compensation = compensation
        }
        let order = compensation.order ?? []
        while compensation.done < order.count {
            let id = order[compensation.done]
            fillUndo(id, at: at, &out)
            switch state.steps[id]?.compensation?.status {
            case .succeeded?:
                compensation.done += 1
                state.compensation = compensation
            case .failed?:
                let error = state.steps[id]?.compensation?.error ?? "failed"
                finishCompensation(error: "step '\(id)': \(error)", at: at, &out)
                return
            default:
                return
            }
        }
        finishCompensation(error: nil, at: at, &out)
    }

    /// Starts step `id`'s compensation, or publishes more of a map's, and marks it succeeded when nothing is left.
    mutating func fillUndo(_ id: String, at: Date, _ out: inout Output) {
        guard let spec = stepsByID[id]?.compensation, var step = state.steps[id] else { return }
        if let undo = step.compensation, undo.status != .running { return }
        var undo = step.compensation ?? StepCompensation(status: .running, startedAt: at)
        let references = (try? spec.arguments.references()) ?? []
        var scope = scopeObject(nil, references)
        switch stepsByID[id]?.kind {
        case .map(let map)?:
            let elements = step.elements ?? []
            if step.compensation == nil {
                undo.next = elements.count - 1
                undo.running = []
                undo.done = 0
            }
            let items: [JSONValue]
            if case .array(let found)? = map.over.resolve(in: self.scope(for: [map.over])) { items = found } else { items = [] }
            let limit = min(map.maxParallel ?? Int.max, limits.maxMapParallel)
            var next = undo.next ?? -1
            var running = undo.running ?? []
            while running.count < limit, next >= 0 {
                let i = next
                next -= 1
                guard elements.indices.contains(i), elements[i].status == .succeeded else { continue }
                scope["output"] = elements[i].output ?? .null
                scope["item"] = items.indices.contains(i) ? items[i] : .null
                scope["index"] = .number(Double(i))
                do {
                    let arguments = try spec.arguments.render(in: .object(scope), maxBytes: limits.maxArgumentsBytes)
                    out.tasks.append(stepTask(taskID(step: id, generation: step.generation, index: i) + Self.undoSuffix, spec,
                                              arguments: arguments, step: id, index: i))
                    running.append(i)
                } catch {
                    undo.status = .failed
                    undo.error = "element [\(i)]: arguments: \(error.message)"
                    undo.finishedAt = at
                    break
                }
            }
            undo.next = next
            undo.running = running
            if undo.status == .running, running.isEmpty, next < 0 {
                undo.status = .succeeded
                undo.finishedAt = at
            }
        default:
            guard step.compensation == nil else { return }  // published; its outcome settles it
            scope["output"] = step.output ?? .null
            do {
                let arguments = try spec.arguments.render(in: .object(scope), maxBytes: limits.maxArgumentsBytes)
                out.tasks.append(stepTask(taskID(step: id, generation: step.generation) + Self.undoSuffix, spec,
                                          arguments: arguments, step: id, index: nil))
            } catch {
                undo.status = .failed
                undo.error = "arguments: \(error.message)"
                undo.finishedAt = at
            }
        }
        step.compensation = undo
        state.steps[id] = step
    }

    /// A compensation task's outcome (`attempt` from the worker).
    mutating func settleUndo(_ taskID: String, attempt: Int, result: Result<JSONValue, StepFailure>?, at: Date) {
        guard state.status == .compensating, let ref = parse(String(taskID.dropLast(Self.undoSuffix.count))),
              var step = state.steps[ref.step], step.generation == ref.generation,
              var undo = step.compensation, undo.status == .running else { return }
        if let i = ref.index {
            guard let k = undo.running?.firstIndex(of: i), let result else { return }
            undo.running?.remove(at: k)
            switch result {
            case .success:
                undo.done = (undo.done ?? 0) + 1
            case .failure(let failure):
                undo.status = .failed
                undo.error = "element [\(i)]: \(failure.message)"
                undo.finishedAt = at
            }
        } else {
            undo.attempts = max(undo.attempts, attempt)
            guard let result else {
                step.compensation = undo
                state.steps[ref.step] = step
                return
            }
            switch result {
            case .success:
                undo.status = .succeeded
            case .failure(let failure):
                undo.status = .failed
                undo.error = failure.message
            }
            undo.finishedAt = at
        }
        step.compensation = undo
        state.steps[ref.step] = step
    }

    /// Ends a compensating run: compensated, or compensation_failed with `error`.
    mutating func finishCompensation(error: String?, at: Date, _ out: inout Output) {
        guard var compensation = state.compensation else { return }
        compensation.error = error
        state.compensation = compensation
        state.status = error == nil ? .compensated : .compensationFailed
        state.finishedAt = at
        // The run is over for good (no retry after compensation): what never started never will.
        for id in order where state.steps[id]?.status == .waiting || state.steps[id]?.status == .ready {
            state.steps[id]?.status = .skipped
        }
        var reason = state.error ?? (compensation.cause == .cancelled ? "cancelled" : "failed")
        if let error { reason += "; compensation failed: \(error)" }
        out.final = compensation.cause == .cancelled ? .cancelled(reason: reason) : .failed(reason: reason)
    }
}
