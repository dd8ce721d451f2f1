import Foundation

/// Running a failed step again (and, with `rerun`, the steps after it).
extension WorkflowStateMachine {
    mutating func retry(_ id: String, rerun: Bool, at: Date, _ out: inout Output) {
        guard state.status == .failed || isActive, let step = state.steps[id] else { return }
        guard step.status == .failed || (rerun && step.status.isSettled && step.status != .skipped) else { return }
        // The step, then every step after it that failed or was skipped (or, to rerun, every one).
        var reset: [String] = [id]
        var seen: Set<String> = [id]
        var queue = [id]
        while let next = queue.popLast() {
            for d in dependents[next] ?? [] where seen.insert(d).inserted {
                queue.append(d)
                let status = state.steps[d]?.status ?? .waiting
                if rerun || status == .failed || status == .skipped { reset.append(d) }
            }
        }
        // A step skipped by a branch that is not itself reset stays skipped: that
        // branch's decision stands (a step on the side not taken must not run).
        let resetSet = Set(reset)
        reset.removeAll { target in
            guard target != id, state.steps[target]?.status == .skipped, let branch = branchOf[target] else { return false }
            return !resetSet.contains(branch)
        }
        for r in order where reset.contains(r) {
            guard var s = state.steps[r] else { continue }
            mapProgress[r] = nil  // its elements are reset below
            if s.elements != nil { replacedElements.insert(r) }
            out.cancel.append(contentsOf: timerIDs(of: r, s).map { .cancelTimer(timerID: $0) })
            if s.status == .running, case .workflow? = stepsByID[r]?.kind {
                out.children.append(.cancelChild(childKey: childKey(step: r, generation: s.generation)))
            }
            if r == id, !rerun, case .map? = stepsByID[r]?.kind, var elements = s.elements {
                // Retry only the elements that failed; keep what succeeded.
                for i in elements.indices where elements[i].status != .succeeded { elements[i] = ElementState() }
                s.elements = elements
                s.generation += 1
                s.status = .running
                s.error = nil
                s.output = nil
                s.finishedAt = nil
                state.steps[r] = s
                continue
            }
            if s.status != .waiting { s.generation += 1 }
            s.status = .waiting
            s.output = nil
            s.error = nil
            s.attempts = 0
            s.elements = nil
            s.startedAt = nil
            s.finishedAt = nil
            s.progress = nil
            s.progressMessage = nil
            state.steps[r] = s
        }
        if state.status == .failed {
            state.status = .running
            state.error = nil
            state.failedStep = nil
            state.finishedAt = nil
            if let ms = definition.timeoutMilliseconds {
                out.schedule.append(.scheduleTimer(timerID: runTimeoutTimerID, at: at.addingTimeInterval(Double(ms) / 1000)))
            }
        }
        // A step that failed while the run was failed (and was not reset) fails it again.
        if let other = order.first(where: { state.steps[$0]?.status == .failed && failureFailsRun($0) }) {
            failRun("step '\(other)' failed: \(state.steps[other]?.error ?? "")", step: other, at: at, &out)
            return
        }
        if case .map(let spec)? = stepsByID[id]?.kind, state.steps[id]?.status == .running {
            if decideMap(id, spec, at: at) {
                afterSettling(id, at: at, &out)
                return
            }
            fillMap(id, spec, at: at, &out)
        }
        advance(at, &out)
    }

    /// Timers a running step may have pending.
    func timerIDs(of id: String, _ step: StepState) -> [String] {
        let base = taskID(step: id, generation: step.generation)
        switch stepsByID[id]?.kind {
        case .task(let spec)? where spec.timeoutMilliseconds != nil: return [base + "/~timeout"]
        case .delay?: return [base + "/~delay"]
        case .signal(let spec)? where spec.timeoutMilliseconds != nil: return [base + "/~signal"]
        case .map(let spec)? where spec.task.timeoutMilliseconds != nil:
            return (step.elements ?? []).indices.filter { step.elements?[$0].status == .running }.map { "\(base)/\($0)/~timeout" }
        default: return []
        }
    }
}
