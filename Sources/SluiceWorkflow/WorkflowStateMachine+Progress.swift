import Foundation

/// How a run moves on: steps start when their dependencies settle, joins
/// and maps decide, and the run completes or fails.
extension WorkflowStateMachine {
    /// After a step settled: fail the run if nothing absorbs its failure, then move on.
    mutating func afterSettling(_ id: String, at: Date, _ out: inout Output) {
        guard isActive else { return }
        if state.steps[id]?.status == .failed, failureFailsRun(id) {
            failRun("step '\(id)' failed: \(state.steps[id]?.error ?? "")", step: id, at: at, &out)
            return
        }
        advance(at, &out)
    }

    func failureFailsRun(_ id: String) -> Bool {
        let next = dependents[id] ?? []
        return next.isEmpty || next.contains { id in
            if case .join? = stepsByID[id]?.kind { return false }
            return true
        }
    }

    /// Starts every step whose dependencies allow it, settles joins and
    /// branches, skips what cannot run, and completes the run when all settled.
    mutating func advance(_ at: Date, _ out: inout Output) {
        var changed = true
        while changed && isActive {
            changed = false
            for id in order where state.steps[id]?.status == .waiting {
                guard isActive else { return }
                let deps = graph[id] ?? []
                let statuses = deps.map { state.steps[$0]?.status ?? .waiting }
                if case .join(let policy)? = stepsByID[id]?.kind {
                    // A join decides on the steps it names; a branch that targets
                    // it only orders it (and skips it when not taken).
                    let own = stepsByID[id]?.after ?? deps
                    let gates = deps.filter { !own.contains($0) }
                    if gates.contains(where: { state.steps[$0]?.status == .skipped || state.steps[$0]?.status == .failed }) {
                        state.steps[id]?.status = .skipped
                        changed = true
                        continue
                    }
                    guard gates.allSatisfy({ state.steps[$0]?.status == .succeeded }) else { continue }
                    let ownStatuses = own.map { state.steps[$0]?.status ?? .waiting }
                    if settleJoin(id, policy, deps: own, statuses: ownStatuses, at: at, &out) { changed = true }
                    continue
                }
                if statuses.contains(.skipped) {
                    state.steps[id]?.status = .skipped
                    changed = true
                } else if statuses.allSatisfy({ $0 == .succeeded }) {
                    start(id, at: at, &out)
                    changed = true
                }
            }
        }
        guard isActive else { return }
        if order.allSatisfy({ state.steps[$0]?.status.isSettled == true }) { complete(at: at, &out) }
    }

    /// Settles a join if its policy can decide; true if it settled.
    mutating func settleJoin(_ id: String, _ policy: JoinPolicy, deps: [String], statuses: [StepState.Status], at: Date,
                                     _ out: inout Output) -> Bool {
        let counted = statuses.filter { $0 != .skipped }
        if counted.isEmpty {
            guard statuses.allSatisfy({ $0 == .skipped }) else { return false }
            state.steps[id]?.status = .skipped
            return true
        }
        let succeeded = counted.filter { $0 == .succeeded }.count
        let failed = counted.filter { $0 == .failed }.count
        guard let decision = policy.decide(succeeded: succeeded, failed: failed, total: counted.count) else { return false }
        var step = state.steps[id] ?? StepState()
        step.startedAt = step.startedAt ?? at
        step.finishedAt = at
        step.output = .array(deps.map { dep in
            state.steps[dep].flatMap { $0.status == .succeeded ? $0.output : nil } ?? .null
        })
        if decision {
            step.status = .succeeded
        } else {
            step.status = .failed
            let firstFailed = deps.first { state.steps[$0]?.status == .failed }
            step.error = "\(failed) of \(counted.count) failed" + (firstFailed.map { ", first '\($0)': \(state.steps[$0]?.error ?? "")" } ?? "")
        }
        state.steps[id] = step
        if !decision, failureFailsRun(id) {
            failRun("step '\(id)' failed: \(step.error ?? "")", step: id, at: at, &out)
        }
        return true
    }

    /// Starts a step whose dependencies succeeded (or marks it ready while paused).
    mutating func start(_ id: String, at: Date, _ out: inout Output) {
        guard let definitionStep = stepsByID[id], var step = state.steps[id] else { return }
        let paused = state.status == .paused
        switch definitionStep.kind {
        case .task(let spec):
            if paused { state.steps[id]?.status = .ready; return }
            step.status = .running
            step.startedAt = at
            state.steps[id] = step
            let taskID = taskID(step: id, generation: step.generation)
            do {
                let arguments = try spec.arguments.render(in: scope(for: try spec.arguments.references()),
                                                          maxBytes: limits.maxArgumentsBytes)
                out.tasks.append(stepTask(taskID, spec, arguments: arguments, step: id, index: nil))
                if let ms = spec.timeoutMilliseconds {
                    out.schedule.append(.scheduleTimer(timerID: taskID + "/~timeout", at: at.addingTimeInterval(Double(ms) / 1000)))
                }
            } catch {
                fail(id, "arguments: \(error.message)", at: at, &out)
            }

        case .map(let spec):
            if paused { state.steps[id]?.status = .ready; return }
            step.status = .running
            step.startedAt = at
            guard case .array(let items)? = spec.over.resolve(in: scope(for: [spec.over])) else {
                let found = spec.over.resolve(in: scope(for: [spec.over]))?.typeName ?? "nothing"
                state.steps[id] = step
                fail(id, "map over '\(spec.over)': expected an array, found \(found)", at: at, &out)
                return
            }
            if items.count > limits.maxMapElements {
                state.steps[id] = step
                fail(id, "map over '\(spec.over)': \(items.count) elements; the limit is \(limits.maxMapElements)", at: at, &out)
                return
            }
            step.elements = Array(repeating: ElementState(), count: items.count)
            state.steps[id] = step
            mapProgress[id] = nil
            replacedElements.insert(id)
            if decideMap(id, spec, at: at) {
                afterSettling(id, at: at, &out)
            } else {
                fillMap(id, spec, at: at, &out)
            }

        case .branch(let spec):
            step.startedAt = at
            step.finishedAt = at
            let taken: Bool
            do {
                taken = try spec.condition.evaluate(in: scope(for: spec.condition.references))
            } catch {
                state.steps[id] = step
                fail(id, "condition: \(error.message)", at: at, &out)
                return
            }
            step.status = .succeeded
            step.output = .bool(taken)
            state.steps[id] = step
            for target in taken ? spec.otherwise : spec.then where state.steps[target]?.status == .waiting {
                state.steps[target]?.status = .skipped
            }

        case .workflow(let spec):
            if paused { state.steps[id]?.status = .ready; return }
            step.status = .running
            step.startedAt = at
            state.steps[id] = step
            do {
                let input = try spec.input.render(in: scope(for: try spec.input.references()), maxBytes: limits.maxArgumentsBytes)
                out.children.append(.startChild(childKey: childKey(step: id, generation: step.generation), workflow: spec.name,
                                                version: spec.version, input: input))
            } catch {
                fail(id, "input: \(error.message)", at: at, &out)
            }

        case .delay(let ms):
            if paused { state.steps[id]?.status = .ready; return }
            step.status = .running
            step.startedAt = at
            state.steps[id] = step
            out.schedule.append(.scheduleTimer(timerID: taskID(step: id, generation: step.generation) + "/~delay",
                                               at: at.addingTimeInterval(Double(ms) / 1000)))

        case .signal(let spec):
            if paused { state.steps[id]?.status = .ready; return }
            step.startedAt = at
            if let signal = takeSignal(spec.name) {
                // It came first: the step is done at once (``advance`` moves on).
                step.status = .succeeded
                step.output = signal.data
                step.finishedAt = at
                state.steps[id] = step
                return
            }
            step.status = .running
            state.steps[id] = step
            if let ms = spec.timeoutMilliseconds {
                out.schedule.append(.scheduleTimer(timerID: taskID(step: id, generation: step.generation) + "/~signal",
                                                   at: at.addingTimeInterval(Double(ms) / 1000)))
            }

        case .join:
            break  // settled by `advance`
        }
    }

    /// Fails a step that could not start; the failure is handled like a task's.
    mutating func fail(_ id: String, _ message: String, at: Date, _ out: inout Output) {
        state.steps[id]?.status = .failed
        state.steps[id]?.error = message
        state.steps[id]?.finishedAt = at
        if failureFailsRun(id) { failRun("step '\(id)' failed: \(message)", step: id, at: at, &out) }
    }

    /// Publishes a map step's waiting elements, up to its parallelism. Starts
    /// at the first element that may be waiting and writes elements in
    /// place: O(elements published), not O(elements).
    mutating func fillMap(_ id: String, _ spec: MapSpec, at: Date, _ out: inout Output) {
        guard state.status == .running, let (generation, count) = runningMap(id),
              case .array(let items)? = spec.over.resolve(in: scope(for: [spec.over])) else { return }
        var progress = progress(ofMap: id)
        let limit = min(spec.maxParallel ?? Int.max, limits.maxMapParallel)
        let references = (try? spec.task.arguments.references()) ?? []
        let base = scope(for: references)
        var renderFailed = false
        var i = progress.cursor
        while i < count && progress.running < limit {
            guard state.steps[id]!.elements![i].status == .waiting else {
                i += 1
                continue
            }
            guard items.indices.contains(i) else { break }
            var element = scopeObject(base)
            element["item"] = items[i]
            element["index"] = .number(Double(i))
            let taskID = taskID(step: id, generation: generation, index: i)
            do {
                let arguments = try spec.task.arguments.render(in: .object(element), maxBytes: limits.maxArgumentsBytes)
                out.tasks.append(stepTask(taskID, spec.task, arguments: arguments, step: id, index: i))
                state.steps[id]!.elements![i].status = .running
                changedElements[id, default: []].insert(i)
                progress.running += 1
                if let ms = spec.task.timeoutMilliseconds {
                    out.schedule.append(.scheduleTimer(timerID: taskID + "/~timeout", at: at.addingTimeInterval(Double(ms) / 1000)))
                }
            } catch {
                state.steps[id]!.elements![i].status = .failed
                state.steps[id]!.elements![i].error = "arguments: \(error.message)"
                changedElements[id, default: []].insert(i)
                progress.failed += 1
                renderFailed = true
            }
            i += 1
        }
        progress.cursor = i
        mapProgress[id] = progress
        if renderFailed, decideMap(id, spec, at: at) { afterSettling(id, at: at, &out) }
    }

    /// Settles a map step if its join policy can decide; true if it settled.
    /// Deciding reads the counts; only a decision reads the elements.
    mutating func decideMap(_ id: String, _ spec: MapSpec, at: Date) -> Bool {
        guard let (_, count) = runningMap(id) else { return false }
        let progress = progress(ofMap: id)
        guard let decision = spec.join.decide(succeeded: progress.succeeded, failed: progress.failed, total: count) else { return false }
        var step = state.steps[id]!
        let elements = step.elements ?? []
        step.output = StepState.mapOutput(elements)
        step.finishedAt = at
        if decision {
            step.status = .succeeded
        } else {
            step.status = .failed
            let first = elements.firstIndex { $0.status == .failed }
            step.error = "\(progress.failed) of \(count) elements failed"
                + (first.map { ", first [\($0)]: \(elements[$0].error ?? "")" } ?? "")
        }
        state.steps[id] = step
        return true
    }

    mutating func complete(at: Date, _ out: inout Output) {
        let output: JSONValue
        if let template = definition.output {
            do {
                output = try template.render(in: scope(for: try template.references()), maxBytes: limits.maxArgumentsBytes)
            } catch {
                failRun("output: \(error.message)", step: nil, at: at, &out)
                return
            }
        } else {
            var leaves: [String: JSONValue] = [:]
            for id in order where (dependents[id] ?? []).isEmpty {
                if let step = state.steps[id], step.status == .succeeded { leaves[id] = step.output ?? .null }
            }
            output = .object(leaves)
        }
        state.status = .completed
        state.output = output
        state.finishedAt = at
        if definition.timeoutMilliseconds != nil { out.cancel.append(.cancelTimer(timerID: runTimeoutTimerID)) }
        out.final = .completed(output: output)
    }

    mutating func failRun(_ reason: String, step: String?, at: Date, _ out: inout Output) {
        guard isActive else { return }
        state.error = reason
        state.failedStep = step
        if definition.timeoutMilliseconds != nil { out.cancel.append(.cancelTimer(timerID: runTimeoutTimerID)) }
        // With work to undo the run compensates first (``advanceCompensation``, after this event).
        if beginCompensation(cause: .failed, at: at) { return }
        state.status = .failed
        state.finishedAt = at
        // Steps started earlier in this same event stay started: their tasks are
        // still published, and their results are recorded for a retry.
        out.final = .failed(reason: reason)
    }
}
