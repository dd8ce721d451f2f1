public import Foundation

/// One workflow run as a pure, deterministic state machine: an event in,
/// the new ``RunState`` and a list of ``WorkflowAction``s out. No clocks, no
/// I/O: times come with the events, and the coordinator carries out the
/// actions after it has committed the new state.
///
/// Rules (docs/workflows.md explains them with examples):
/// * A step starts when all its dependencies succeeded. It is skipped when one
///   of them was skipped. A join instead counts its dependencies' outcomes,
///   leaving skipped ones out, and settles by its policy (all skipped: skipped).
/// * A failed step fails the run, unless every step that depends on it is a
///   join (the join's policy then decides).
/// * The run completes when every step has settled; its output is the
///   definition's output template, or an object of the outputs of the steps
///   nothing depends on.
/// * Events that are stale (an older generation's task after a retry by
///   hand), duplicated (a step or element already settled) or for a finished
///   run change nothing. While a run is failed, results of its steps that
///   were still running are recorded (a retry may need them), but nothing new
///   is started.
public struct WorkflowStateMachine: Sendable {
    public let definition: WorkflowDefinition
    /// How large its step tasks and maps may be.
    public let limits: WorkflowLimits
    public private(set) var state: RunState
    private let graph: [String: [String]]
    private let dependents: [String: [String]]
    private let order: [String]
    private let stepsByID: [String: WorkflowStep]
    /// The branch that targets a step, for steps a branch targets.
    private let branchOf: [String: String]

    /// A new, pending run (send it `.start`).
    public init(definition: WorkflowDefinition, runID: String, input: JSONValue, createdAt: Date,
                parent: RunState.ParentLink? = nil, traceparent: String? = nil,
                limits: WorkflowLimits = .standard) throws(WorkflowError) {
        var steps: [String: StepState] = [:]
        for step in definition.steps { steps[step.id] = StepState() }
        try self.init(definition: definition, state: RunState(runID: runID, workflow: definition.name, version: definition.version,
                                                              input: input, steps: steps, createdAt: createdAt, parent: parent,
                                                              traceparent: traceparent), limits: limits)
    }

    /// A run restored from its stored state.
    public init(definition: WorkflowDefinition, state: RunState, limits: WorkflowLimits = .standard) throws(WorkflowError) {
        try definition.validate()
        self.limits = limits
        guard definition.name == state.workflow, definition.version == state.version else {
            throw WorkflowError(.invalidDefinition, "run \(state.runID) is of \(state.workflow) v\(state.version), not \(definition.name) v\(definition.version)")
        }
        self.definition = definition
        self.state = state
        let graph = try definition.dependencyGraph()
        self.graph = graph
        self.order = try definition.topologicalOrder(graph)
        var dependents: [String: [String]] = [:]
        for id in order { for dep in graph[id] ?? [] { dependents[dep, default: []].append(id) } }
        self.dependents = dependents
        self.stepsByID = Dictionary(uniqueKeysWithValues: definition.steps.map { ($0.id, $0) })
        var branchOf: [String: String] = [:]
        for step in definition.steps {
            if case .branch(let b) = step.kind { for target in b.then + b.otherwise { branchOf[target] = step.id } }
        }
        self.branchOf = branchOf
        for step in definition.steps where self.state.steps[step.id] == nil { self.state.steps[step.id] = StepState() }
    }

    // MARK: Ids

    /// The id of a step's task (`index` for a map element). Stable, so a
    /// republished task is recognised as the same one.
    public func taskID(step: String, generation: Int, index: Int? = nil) -> String {
        "\(state.runID)/\(step)/\(generation)" + (index.map { "/\($0)" } ?? "")
    }

    /// The timer that ends the whole run.
    public var runTimeoutTimerID: String { "\(state.runID)/~timeout" }

    func childKey(step: String, generation: Int) -> String { "\(state.runID)/\(step)/\(generation)" }

    /// Step, generation and element of one of this run's ids (a task id, a
    /// child key, or a timer id without its `~kind` suffix).
    private func parse(_ id: String) -> (step: String, generation: Int, index: Int?)? {
        let prefix = "\(state.runID)/"
        guard id.hasPrefix(prefix) else { return nil }
        let parts = id.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3, let generation = Int(parts[1]) else { return nil }
        let index = parts.count == 3 ? Int(parts[2]) : nil
        if parts.count == 3 && index == nil { return nil }
        return (String(parts[0]), generation, index)
    }

    // MARK: Events

    /// Applies an event; returns what the coordinator must do.
    public mutating func handle(_ event: WorkflowEvent) -> [WorkflowAction] {
        var out = Output()
        switch event {
        case .start(let at):
            guard state.status == .pending else { return [] }
            state.status = .running
            state.startedAt = at
            if let ms = definition.timeoutMilliseconds {
                out.schedule.append(.scheduleTimer(timerID: runTimeoutTimerID, at: at.addingTimeInterval(Double(ms) / 1000)))
            }
            advance(at, &out)

        case .taskSucceeded(let taskID, let attempt, let output, let at):
            settleTask(taskID, attempt: attempt, result: .success(output ?? .null), at: at, &out)

        case .taskDead(let taskID, let attempt, let reason, let error, let at):
            settleTask(taskID, attempt: attempt, result: .failure(error.map { "\(reason): \($0)" } ?? reason), at: at, &out)

        case .taskRetrying(let taskID, let attempt, _, _):
            guard state.status != .pending, !state.status.isFinal || state.status == .failed,
                  let ref = parse(taskID), var step = state.steps[ref.step], step.generation == ref.generation else { return [] }
            if let i = ref.index {
                guard var elements = step.elements, elements.indices.contains(i), elements[i].status == .running else { return [] }
                elements[i].attempts = max(elements[i].attempts, attempt)
                step.elements = elements
            } else {
                guard step.status == .running else { return [] }
                step.attempts = max(step.attempts, attempt)
            }
            state.steps[ref.step] = step

        case .timerFired(let timerID, let at):
            timerFired(timerID, at: at, &out)

        case .childFinished(let key, let succeeded, let output, let error, let at):
            guard acceptsResults, let ref = parse(key), ref.index == nil, var step = state.steps[ref.step],
                  step.generation == ref.generation, step.status == .running, case .workflow? = stepsByID[ref.step]?.kind else { return [] }
            if succeeded {
                step.status = .succeeded
                step.output = output ?? .null
            } else {
                step.status = .failed
                step.error = "sub-workflow: \(error ?? "failed")"
            }
            step.finishedAt = at
            state.steps[ref.step] = step
            afterSettling(ref.step, at: at, &out)

        case .pause:
            guard state.status == .running else { return [] }
            state.status = .paused

        case .resume(let at):
            guard state.status == .paused else { return [] }
            state.status = .running
            for id in order {
                guard let step = state.steps[id] else { continue }
                if step.status == .ready {
                    state.steps[id]?.status = .waiting
                    start(id, at: at, &out)
                } else if step.status == .running, case .map(let spec)? = stepsByID[id]?.kind {
                    fillMap(id, spec, at: at, &out)
                }
            }
            advance(at, &out)

        case .cancel(let reason, let at):
            guard !state.status.isFinal || state.status == .failed else { return [] }
            // (A failed run can be cancelled too: that rules out a later retry.)
            state.status = .cancelled
            state.error = reason
            state.finishedAt = at
            if definition.timeoutMilliseconds != nil { out.cancel.append(.cancelTimer(timerID: runTimeoutTimerID)) }
            for id in order {
                guard var step = state.steps[id] else { continue }
                switch step.status {
                case .waiting, .ready:
                    step.status = .skipped
                case .running:
                    if case .workflow? = stepsByID[id]?.kind { out.children.append(.cancelChild(childKey: childKey(step: id, generation: step.generation))) }
                    out.cancel.append(contentsOf: timerIDs(of: id, step).map { .cancelTimer(timerID: $0) })
                default:
                    break
                }
                state.steps[id] = step
            }
            out.final = .cancelled(reason: reason)

        case .retryStep(let stepID, let rerun, let at):
            retry(stepID, rerun: rerun, at: at, &out)
        }
        return out.actions
    }

    /// Running or paused (new results count), or failed (results are recorded for a retry).
    private var acceptsResults: Bool {
        state.status == .running || state.status == .paused || state.status == .failed
    }

    private var isActive: Bool { state.status == .running || state.status == .paused }

    private mutating func settleTask(_ taskID: String, attempt: Int, result: Result<JSONValue, StepFailure>, at: Date, _ out: inout Output) {
        guard acceptsResults, let ref = parse(taskID), var step = state.steps[ref.step], step.generation == ref.generation,
              step.status == .running else { return }
        if let i = ref.index {
            guard case .map(let spec)? = stepsByID[ref.step]?.kind, var elements = step.elements, elements.indices.contains(i),
                  elements[i].status == .running else { return }
            elements[i].attempts = max(elements[i].attempts, attempt)
            switch result {
            case .success(let output):
                elements[i].status = .succeeded
                elements[i].output = output
            case .failure(let failure):
                elements[i].status = .failed
                elements[i].error = failure.message
            }
            step.elements = elements
            state.steps[ref.step] = step
            if let ms = spec.task.timeoutMilliseconds, ms > 0 {
                out.cancel.append(.cancelTimer(timerID: taskID + "/~timeout"))
            }
            if decideMap(ref.step, spec, at: at) {
                afterSettling(ref.step, at: at, &out)
            } else if isActive {
                fillMap(ref.step, spec, at: at, &out)
            }
            return
        }
        guard case .task(let spec)? = stepsByID[ref.step]?.kind else { return }
        step.attempts = max(step.attempts, attempt)
        switch result {
        case .success(let output):
            step.status = .succeeded
            step.output = output
        case .failure(let failure):
            step.status = .failed
            step.error = failure.message
        }
        step.finishedAt = at
        state.steps[ref.step] = step
        if spec.timeoutMilliseconds != nil { out.cancel.append(.cancelTimer(timerID: taskID + "/~timeout")) }
        afterSettling(ref.step, at: at, &out)
    }

    private mutating func timerFired(_ timerID: String, at: Date, _ out: inout Output) {
        if timerID == runTimeoutTimerID {
            guard isActive else { return }
            let ms = definition.timeoutMilliseconds ?? 0
            failRun("the workflow timed out after \(WorkflowDuration.text(milliseconds: ms))", step: nil, at: at, &out)
            return
        }
        guard acceptsResults, let tilde = timerID.range(of: "/~", options: .backwards) else { return }
        let kind = timerID[tilde.upperBound...]
        let base = String(timerID[..<tilde.lowerBound])
        guard let ref = parse(base), var step = state.steps[ref.step], step.generation == ref.generation,
              step.status == .running else { return }
        switch (kind, stepsByID[ref.step]?.kind) {
        case ("delay", .delay?):
            step.status = .succeeded
            step.output = .null
            step.finishedAt = at
            state.steps[ref.step] = step
            afterSettling(ref.step, at: at, &out)
        case ("timeout", .task(let spec)?) where ref.index == nil:
            step.status = .failed
            step.error = "timed out after \(WorkflowDuration.text(milliseconds: spec.timeoutMilliseconds ?? 0))"
            step.finishedAt = at
            state.steps[ref.step] = step
            afterSettling(ref.step, at: at, &out)
        case ("timeout", .map(let spec)?):
            guard let i = ref.index, var elements = step.elements, elements.indices.contains(i), elements[i].status == .running else { return }
            elements[i].status = .failed
            elements[i].error = "timed out after \(WorkflowDuration.text(milliseconds: spec.task.timeoutMilliseconds ?? 0))"
            step.elements = elements
            state.steps[ref.step] = step
            if decideMap(ref.step, spec, at: at) {
                afterSettling(ref.step, at: at, &out)
            } else if isActive {
                fillMap(ref.step, spec, at: at, &out)
            }
        default:
            return
        }
    }

    // MARK: Progress

    /// After a step settled: fail the run if nothing absorbs its failure, then move on.
    private mutating func afterSettling(_ id: String, at: Date, _ out: inout Output) {
        guard isActive else { return }
        if state.steps[id]?.status == .failed, failureFailsRun(id) {
            failRun("step '\(id)' failed: \(state.steps[id]?.error ?? "")", step: id, at: at, &out)
            return
        }
        advance(at, &out)
    }

    private func failureFailsRun(_ id: String) -> Bool {
        let next = dependents[id] ?? []
        return next.isEmpty || next.contains { id in
            if case .join? = stepsByID[id]?.kind { return false }
            return true
        }
    }

    /// Starts every step whose dependencies allow it, settles joins and
    /// branches, skips what cannot run, and completes the run when all settled.
    private mutating func advance(_ at: Date, _ out: inout Output) {
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
    private mutating func settleJoin(_ id: String, _ policy: JoinPolicy, deps: [String], statuses: [StepState.Status], at: Date,
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
    private mutating func start(_ id: String, at: Date, _ out: inout Output) {
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

        case .join:
            break  // settled by `advance`
        }
    }

    /// Fails a step that could not start; the failure is handled like a task's.
    private mutating func fail(_ id: String, _ message: String, at: Date, _ out: inout Output) {
        state.steps[id]?.status = .failed
        state.steps[id]?.error = message
        state.steps[id]?.finishedAt = at
        if failureFailsRun(id) { failRun("step '\(id)' failed: \(message)", step: id, at: at, &out) }
    }

    /// Publishes a map step's waiting elements, up to its parallelism.
    private mutating func fillMap(_ id: String, _ spec: MapSpec, at: Date, _ out: inout Output) {
        guard state.status == .running, var step = state.steps[id], step.status == .running, var elements = step.elements,
              case .array(let items)? = spec.over.resolve(in: scope(for: [spec.over])) else { return }
        var running = elements.filter { $0.status == .running }.count
        let limit = min(spec.maxParallel ?? Int.max, limits.maxMapParallel)
        let references = (try? spec.task.arguments.references()) ?? []
        let base = scope(for: references)
        var renderFailed = false
        for i in elements.indices where elements[i].status == .waiting && running < limit {
            guard items.indices.contains(i) else { break }
            var element = scopeObject(base)
            element["item"] = items[i]
            element["index"] = .number(Double(i))
            let taskID = taskID(step: id, generation: step.generation, index: i)
            do {
                let arguments = try spec.task.arguments.render(in: .object(element), maxBytes: limits.maxArgumentsBytes)
                out.tasks.append(stepTask(taskID, spec.task, arguments: arguments, step: id, index: i))
                elements[i].status = .running
                running += 1
                if let ms = spec.task.timeoutMilliseconds {
                    out.schedule.append(.scheduleTimer(timerID: taskID + "/~timeout", at: at.addingTimeInterval(Double(ms) / 1000)))
                }
            } catch {
                elements[i].status = .failed
                elements[i].error = "arguments: \(error.message)"
                renderFailed = true
            }
        }
        step.elements = elements
        state.steps[id] = step
        if renderFailed, decideMap(id, spec, at: at) { afterSettling(id, at: at, &out) }
    }

    /// Settles a map step if its join policy can decide; true if it settled.
    private mutating func decideMap(_ id: String, _ spec: MapSpec, at: Date) -> Bool {
        guard var step = state.steps[id], step.status == .running, let elements = step.elements else { return false }
        let succeeded = elements.filter { $0.status == .succeeded }.count
        let failed = elements.filter { $0.status == .failed }.count
        guard let decision = spec.join.decide(succeeded: succeeded, failed: failed, total: elements.count) else { return false }
        step.output = .array(elements.map { $0.status == .succeeded ? ($0.output ?? .null) : .null })
        step.finishedAt = at
        if decision {
            step.status = .succeeded
        } else {
            step.status = .failed
            let first = elements.firstIndex { $0.status == .failed }
            step.error = "\(failed) of \(elements.count) elements failed"
                + (first.map { ", first [\($0)]: \(elements[$0].error ?? "")" } ?? "")
        }
        state.steps[id] = step
        return true
    }

    private mutating func complete(at: Date, _ out: inout Output) {
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

    private mutating func failRun(_ reason: String, step: String?, at: Date, _ out: inout Output) {
        guard isActive else { return }
        state.status = .failed
        state.error = reason
        state.failedStep = step
        state.finishedAt = at
        if definition.timeoutMilliseconds != nil { out.cancel.append(.cancelTimer(timerID: runTimeoutTimerID)) }
        // Steps started earlier in this same event stay started: their tasks are
        // still published, and their results are recorded for a retry.
        out.final = .failed(reason: reason)
    }

    // MARK: Retry

    private mutating func retry(_ id: String, rerun: Bool, at: Date, _ out: inout Output) {
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
    private func timerIDs(of id: String, _ step: StepState) -> [String] {
        let base = taskID(step: id, generation: step.generation)
        switch stepsByID[id]?.kind {
        case .task(let spec)? where spec.timeoutMilliseconds != nil: return [base + "/~timeout"]
        case .delay?: return [base + "/~delay"]
        case .map(let spec)? where spec.task.timeoutMilliseconds != nil:
            return (step.elements ?? []).indices.filter { step.elements?[$0].status == .running }.map { "\(base)/\($0)/~timeout" }
        default: return []
        }
    }

    // MARK: Helpers

    /// The data templates and conditions can see, limited to the steps they reference.
    private func scope(for references: [ValuePath]) -> JSONValue {
        .object(scopeObject(nil, references))
    }

    private func scopeObject(_ base: JSONValue?, _ references: [ValuePath] = []) -> [String: JSONValue] {
        if case .object(let o)? = base { return o }
        var steps: [String: JSONValue] = [:]
        for path in references {
            guard let id = path.stepID, steps[id] == nil, let s = state.steps[id] else { continue }
            steps[id] = .object(["output": s.output ?? .null, "status": .string(s.status.rawValue), "error": s.error.map(JSONValue.string) ?? .null])
        }
        return ["input": state.input, "steps": .object(steps)]
    }

    private func stepTask(_ taskID: String, _ spec: TaskSpec, arguments: JSONValue, step: String, index: Int?) -> StepTask {
        StepTask(taskID: taskID, name: spec.name, queue: spec.queue ?? definition.defaultQueue, arguments: arguments,
                 maxAttempts: spec.maxAttempts, retry: spec.retry, runID: state.runID, stepID: step, index: index,
                 traceparent: state.traceparent)
    }

    struct StepFailure: Error {
        var message: String
    }

    /// Actions gathered during one event, emitted in a fixed order.
    struct Output {
        var cancel: [WorkflowAction] = []
        var tasks: [StepTask] = []
        var schedule: [WorkflowAction] = []
        var children: [WorkflowAction] = []
        var final: WorkflowAction?

        var actions: [WorkflowAction] {
            var out = cancel
            if !tasks.isEmpty { out.append(.publish(tasks)) }
            out += schedule
            out += children
            if let final { out.append(final) }
            return out
        }
    }
}

extension Result where Failure == WorkflowStateMachine.StepFailure {
    static func failure(_ message: String) -> Result { .failure(WorkflowStateMachine.StepFailure(message: message)) }
}
