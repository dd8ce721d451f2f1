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
    public internal(set) var state: RunState
    let graph: [String: [String]]
    let dependents: [String: [String]]
    let order: [String]
    let stepsByID: [String: WorkflowStep]
    /// The branch that targets a step, for steps a branch targets.
    let branchOf: [String: String]
    /// Element counts of map steps (see ``MapProgress``).
    var mapProgress: [String: MapProgress] = [:]
    /// Map elements changed since ``takeElementChanges()``: a store keeps
    /// elements as rows and writes only these.
    var changedElements: [String: Set<Int>] = [:]
    /// Map steps whose elements were replaced wholesale (the map started or
    /// was retried) since ``takeElementChanges()``: all their rows are rewritten.
    var replacedElements: Set<String> = []

    /// A new, pending run (send it `.start`).
    public init(definition: WorkflowDefinition, runID: String, input: JSONValue, createdAt: Date,
                parent: RunState.ParentLink? = nil, traceparent: String? = nil,
                limits: WorkflowLimits = .standard) throws(WorkflowError) {
        try self.init(compiled: CompiledWorkflow(definition), runID: runID, input: input, createdAt: createdAt, parent: parent,
                      traceparent: traceparent, limits: limits)
    }

    /// A new, pending run of a definition checked and compiled before (send it `.start`).
    public init(compiled: CompiledWorkflow, runID: String, input: JSONValue, createdAt: Date,
                parent: RunState.ParentLink? = nil, traceparent: String? = nil,
                limits: WorkflowLimits = .standard) throws(WorkflowError) {
        let definition = compiled.definition
        var steps: [String: StepState] = [:]
        for step in definition.steps { steps[step.id] = StepState() }
        var state = RunState(runID: runID, workflow: definition.name, version: definition.version,
                             input: input, steps: steps, createdAt: createdAt, parent: parent, traceparent: traceparent)
        if let concurrency = definition.concurrency {
            state.slot = RunSlot(key: try concurrency.key(for: input), limit: concurrency.limit)
        }
        try self.init(compiled: compiled, state: state, limits: limits)
    }

    /// A run restored from its stored state.
    public init(definition: WorkflowDefinition, state: RunState, limits: WorkflowLimits = .standard) throws(WorkflowError) {
        try self.init(compiled: CompiledWorkflow(definition), state: state, limits: limits)
    }

    /// A run restored from its stored state, of a definition compiled before.
    public init(compiled: CompiledWorkflow, state: RunState, limits: WorkflowLimits = .standard) throws(WorkflowError) {
        let definition = compiled.definition
        self.limits = limits
        guard definition.name == state.workflow, definition.version == state.version else {
            throw WorkflowError(.invalidDefinition, "run \(state.runID) is of \(state.workflow) v\(state.version), not \(definition.name) v\(definition.version)")
        }
        self.definition = definition
        self.state = state
        self.graph = compiled.graph
        self.order = compiled.order
        self.dependents = compiled.dependents
        self.stepsByID = compiled.stepsByID
        self.branchOf = compiled.branchOf
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
    func parse(_ id: String) -> (step: String, generation: Int, index: Int?)? {
        let prefix = "\(state.runID)/"
        guard id.hasPrefix(prefix) else { return nil }
        let parts = id.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3, let generation = Int(parts[1]) else { return nil }
        let index = parts.count == 3 ? Int(parts[2]) : nil
        if parts.count == 3 && index == nil { return nil }
        return (String(parts[0]), generation, index)
    }

    // MARK: Events

    /// Remembers the id of a message that brought a command; false if this
    /// run applied that message already (see ``RunState/appliedMessages``).
    public mutating func recordMessage(_ id: String) -> Bool {
        state.recordMessage(id)
    }

    /// What a command changes when it applies: the run's status, a retried
    /// step's generation, whether the run has a signal's id.
    private func commandMark(_ event: WorkflowEvent) -> [String] {
        var mark = [state.status.rawValue]
        switch event {
        case .retryStep(let stepID, _, _): mark.append("\(state.steps[stepID]?.generation ?? -1)")
        case .signal(_, let id, _, _): mark.append(state.hasSignal(id: id) ? "kept" : "new")
        default: break
        }
        return mark
    }

    /// Applies an event; returns what the coordinator must do.
    public mutating func handle(_ event: WorkflowEvent) -> [WorkflowAction] {
        var out = Output()
        if handleUndoEvent(event) {
            advanceCompensation(at: event.at, &out)
            return out.actions
        }
        // A command is written into the run's history when it changed the run
        // (told by what each command changes, not by comparing whole runs: a
        // large map's elements would be copied and compared).
        let command = event.commandRecord
        let before = command == nil ? nil : commandMark(event)
        defer {
            if let command, let before, commandMark(event) != before { state.record(command) }
        }
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
            guard state.status != .pending, !state.status.isFinal || state.status == .failed, let ref = parse(taskID) else { return [] }
            if let i = ref.index {
                // In place: a copy of the step would copy every element.
                guard elementIsRunning(ref.step, generation: ref.generation, i, stepRunning: false) else { return [] }
                state.steps[ref.step]!.elements![i].attempts = max(state.steps[ref.step]!.elements![i].attempts, attempt)
                changedElements[ref.step, default: []].insert(i)
            } else {
                guard var step = state.steps[ref.step], step.generation == ref.generation, step.status == .running else { return [] }
                step.attempts = max(step.attempts, attempt)
                // The failed attempt's report no longer says how far the step is.
                step.progress = nil
                step.progressMessage = nil
                state.steps[ref.step] = step
            }

        case .taskProgress(let taskID, let attempt, let fraction, let message, _):
            _ = applyProgress(taskID: taskID, attempt: attempt, fraction: fraction, message: message)

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
                // A step that failed to start may have ended the run.
                guard isActive else { break }
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
            // Compensation is not stopped by a cancel: a duplicate cancel (a
            // forwarded message, a parent's cancel) must not leave work undone.
            guard state.status != .compensating else { return [] }
            guard !state.status.isFinal || state.status == .failed else { return [] }
            // (A failed run can be cancelled too: that rules out a later retry.)
            let compensates = state.status != .failed && hasWorkToCompensate()
            state.status = .cancelled
            state.error = reason
            state.finishedAt = at
            if definition.timeoutMilliseconds != nil { out.cancel.append(.cancelTimer(timerID: runTimeoutTimerID)) }
            var revoked: [String] = []
            for id in order {
                guard var step = state.steps[id] else { continue }
                switch step.status {
                case .waiting, .ready:
                    step.status = .skipped
                case .running:
                    switch stepsByID[id]?.kind {
                    case .workflow?: out.children.append(.cancelChild(childKey: childKey(step: id, generation: step.generation)))
                    case .task?: revoked.append(taskID(step: id, generation: step.generation))
                    case .map?:
                        for (i, element) in (step.elements ?? []).enumerated() where element.status == .running {
                            revoked.append(taskID(step: id, generation: step.generation, index: i))
                        }
                    default: break
                    }
                    // A compensable step's timeout still counts: compensation waits for its outcome.
                    if !(compensates && stepsByID[id]?.compensation != nil) {
                        out.cancel.append(contentsOf: timerIDs(of: id, step).map { .cancelTimer(timerID: $0) })
                    }
                default:
                    break
                }
                state.steps[id] = step
            }
            if !revoked.isEmpty { out.cancel.append(.revokeTasks(revoked)) }
            if compensates, beginCompensation(cause: .cancelled, at: at) {
                advanceCompensation(at: at, &out)
            } else {
                out.final = .cancelled(reason: reason)
            }

        case .retryStep(let stepID, let rerun, let at):
            retry(stepID, rerun: rerun, at: at, &out)

        case .signal(let name, let id, let data, let at):
            receiveSignal(name, id: id, data: data, at: at, &out)
        }
        if state.status == .compensating { advanceCompensation(at: event.at, &out) }
        return out.actions
    }

    /// Applies the outcome of a compensation task; false if `event` is not one.
    mutating func handleUndoEvent(_ event: WorkflowEvent) -> Bool {
        switch event {
        case .taskSucceeded(let taskID, let attempt, let output, let at) where taskID.hasSuffix(Self.undoSuffix):
            settleUndo(taskID, attempt: attempt, result: .success(output ?? .null), at: at)
        case .taskDead(let taskID, let attempt, let reason, let error, let at) where taskID.hasSuffix(Self.undoSuffix):
            settleUndo(taskID, attempt: attempt, result: .failure(error.map { "\(reason): \($0)" } ?? reason), at: at)
        case .taskRetrying(let taskID, let attempt, _, let at) where taskID.hasSuffix(Self.undoSuffix):
            settleUndo(taskID, attempt: attempt, result: nil, at: at)
        case .taskProgress(let taskID, _, _, _, _) where taskID.hasSuffix(Self.undoSuffix):
            break
        default:
            return false
        }
        return true
    }

    /// Records a task step's progress report; true if the state changed.
    /// Task steps only (a map shows its elements' counts instead), from the
    /// attempt that runs now: `attempts` counts the attempts that ended (a
    /// retrying event names the one that failed), so a later one's number is
    /// higher and a late report of an ended attempt is ignored.
    public mutating func applyProgress(taskID: String, attempt: Int, fraction: Double, message: String?) -> Bool {
        guard isActive, let ref = parse(taskID), ref.index == nil, var step = state.steps[ref.step],
              step.generation == ref.generation, step.status == .running, attempt > step.attempts,
              case .task? = stepsByID[ref.step]?.kind, step.progress != fraction || step.progressMessage != message else { return false }
        step.progress = fraction
        step.progressMessage = message
        state.steps[ref.step] = step
        return true
    }

    /// Running or paused (new results count), or failed (results are recorded for a retry).
    var acceptsResults: Bool {
        state.status == .running || state.status == .paused || state.status == .failed || state.status == .compensating
    }

    var isActive: Bool { state.status == .running || state.status == .paused }

    mutating func settleTask(_ taskID: String, attempt: Int, result: Result<JSONValue, StepFailure>, at: Date, _ out: inout Output) {
        guard acceptsResults, let ref = parse(taskID) else { return }
        if let i = ref.index {
            // A compensable map decided early (failFast, atLeast) still records its
            // late elements: one that succeeds is work to undo.
            let stepRunning = stepsByID[ref.step]?.compensation == nil
            guard case .map(let spec)? = stepsByID[ref.step]?.kind,
                  elementIsRunning(ref.step, generation: ref.generation, i, stepRunning: stepRunning) else { return }
            settleElement(ref.step, i, attempt: attempt, result: result)
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
        guard var step = state.steps[ref.step], step.generation == ref.generation, step.status == .running,
              case .task(let spec)? = stepsByID[ref.step]?.kind else { return }
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
        if step.status == .succeeded { noteCompletedWork(ref.step) }
        if spec.timeoutMilliseconds != nil { out.cancel.append(.cancelTimer(timerID: taskID + "/~timeout")) }
        afterSettling(ref.step, at: at, &out)
    }

    /// A signal goes to the first step (in definition order) that waits for
    /// its name, or is kept for one that starts later. A finished run, and a
    /// run that already keeps as many as it may, drop it; one received before
    /// (same id) changes nothing.
    mutating func receiveSignal(_ name: String, id: String, data: JSONValue, at: Date, _ out: inout Output) {
        guard !state.status.isFinal, state.status != .compensating, !state.hasSignal(id: id) else { return }
        if let waiting = order.first(where: { isWaiting(step: $0, for: name) }), var step = state.steps[waiting],
           case .signal(let spec)? = stepsByID[waiting]?.kind {
            _ = state.recordSignal(id)
            if spec.timeoutMilliseconds != nil {
                out.cancel.append(.cancelTimer(timerID: taskID(step: waiting, generation: step.generation) + "/~signal"))
            }
            step.status = .succeeded
            step.output = data
            step.finishedAt = at
            state.steps[waiting] = step
            afterSettling(waiting, at: at, &out)
            return
        }
        guard (state.signals?.count ?? 0) < RunState.keptSignalsLimit else { return }
        _ = state.recordSignal(id)
        state.signals = (state.signals ?? []) + [RunState.ReceivedSignal(name: name, id: id, data: data, at: at)]
    }

    /// Whether a step is a signal step running (waiting) for `name`.
    func isWaiting(step id: String, for name: String) -> Bool {
        guard state.steps[id]?.status == .running, case .signal(let spec)? = stepsByID[id]?.kind else { return false }
        return spec.name == name
    }

    /// Takes the oldest kept signal named `name`, if any.
    mutating func takeSignal(_ name: String) -> RunState.ReceivedSignal? {
        guard let i = state.signals?.firstIndex(where: { $0.name == name }) else { return nil }
        let signal = state.signals!.remove(at: i)
        if state.signals!.isEmpty { state.signals = nil }
        return signal
    }

    mutating func timerFired(_ timerID: String, at: Date, _ out: inout Output) {
        if timerID == runTimeoutTimerID {
            guard isActive else { return }
            let ms = definition.timeoutMilliseconds ?? 0
            failRun("the workflow timed out after \(WorkflowDuration.text(milliseconds: ms))", step: nil, at: at, &out)
            return
        }
        guard acceptsResults, let tilde = timerID.range(of: "/~", options: .backwards) else { return }
        let kind = timerID[tilde.upperBound...]
        let base = String(timerID[..<tilde.lowerBound])
        // (An element of a compensable map decided early still times out: compensation waits for it.)
        guard let ref = parse(base), let current = state.steps[ref.step], current.generation == ref.generation,
              current.status == .running || (ref.index != nil && stepsByID[ref.step]?.compensation != nil) else { return }
        switch (kind, stepsByID[ref.step]?.kind) {
        case ("delay", .delay?):
            var step = current
            step.status = .succeeded
            step.output = .null
            step.finishedAt = at
            state.steps[ref.step] = step
            afterSettling(ref.step, at: at, &out)
        case ("timeout", .task(let spec)?) where ref.index == nil:
            var step = current
            step.status = .failed
            step.error = "timed out after \(WorkflowDuration.text(milliseconds: spec.timeoutMilliseconds ?? 0))"
            step.finishedAt = at
            state.steps[ref.step] = step
            afterSettling(ref.step, at: at, &out)
        case ("signal", .signal(let spec)?):
            var step = current
            let waited = WorkflowDuration.text(milliseconds: spec.timeoutMilliseconds ?? 0)
            switch spec.onTimeout {
            case .fail:
                step.status = .failed
                step.error = "no signal '\(spec.name)' within \(waited)"
            case .continue:
                step.status = .succeeded
                step.output = ["timedOut": true]
            }
            step.finishedAt = at
            state.steps[ref.step] = step
            afterSettling(ref.step, at: at, &out)
        case ("timeout", .map(let spec)?):
            guard let i = ref.index,
                  elementIsRunning(ref.step, generation: ref.generation, i, stepRunning: stepsByID[ref.step]?.compensation == nil) else { return }
            settleElement(ref.step, i, attempt: nil,
                          result: .failure("timed out after \(WorkflowDuration.text(milliseconds: spec.task.timeoutMilliseconds ?? 0))"))
            if decideMap(ref.step, spec, at: at) {
                afterSettling(ref.step, at: at, &out)
            } else if isActive {
                fillMap(ref.step, spec, at: at, &out)
            }
        default:
            return
        }
    }

    // MARK: Helpers

    /// The data templates and conditions can see, limited to the steps they reference.
    func scope(for references: [ValuePath]) -> JSONValue {
        .object(scopeObject(nil, references))
    }

    func scopeObject(_ base: JSONValue?, _ references: [ValuePath] = []) -> [String: JSONValue] {
        if case .object(let o)? = base { return o }
        var steps: [String: JSONValue] = [:]
        for path in references {
            guard let id = path.stepID, steps[id] == nil, let s = state.steps[id] else { continue }
            steps[id] = .object(["output": s.output ?? .null, "status": .string(s.status.rawValue), "error": s.error.map(JSONValue.string) ?? .null])
        }
        return ["input": state.input, "steps": .object(steps)]
    }

    func stepTask(_ taskID: String, _ spec: TaskSpec, arguments: JSONValue, step: String, index: Int?) -> StepTask {
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
