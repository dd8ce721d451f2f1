public import SluiceCore

/// Builds a workflow's steps in Swift:
///
/// ```swift
/// let orders = WorkflowDefinition(name: "orders", version: 1) {
///     WorkflowStep.task("fetch", "orders.fetch", arguments: ["id": "${input.id}"])
///     WorkflowStep.map("ship", after: ["fetch"], over: "steps.fetch.output.items",
///                      task: "shipping.ship", arguments: ["item": "${item}"])
///     WorkflowStep.branch("big", after: ["fetch"], if: "steps.fetch.output.total > 100",
///                         then: ["review"], else: [])
///     WorkflowStep.task("review", "orders.review")
///     WorkflowStep.join("done", after: ["ship", "review"], policy: .tolerate)
/// }
/// try orders.validate()
/// ```
///
/// Paths and conditions given as text are checked by
/// ``WorkflowDefinition/validate()``, like everything else.
@resultBuilder
public enum WorkflowBuilder {
    public static func buildExpression(_ step: WorkflowStep) -> [WorkflowStep] { [step] }
    public static func buildExpression(_ steps: [WorkflowStep]) -> [WorkflowStep] { steps }
    public static func buildBlock(_ parts: [WorkflowStep]...) -> [WorkflowStep] { parts.flatMap { $0 } }
    public static func buildOptional(_ part: [WorkflowStep]?) -> [WorkflowStep] { part ?? [] }
    public static func buildEither(first part: [WorkflowStep]) -> [WorkflowStep] { part }
    public static func buildEither(second part: [WorkflowStep]) -> [WorkflowStep] { part }
    public static func buildArray(_ parts: [[WorkflowStep]]) -> [WorkflowStep] { parts.flatMap { $0 } }
}

extension WorkflowDefinition {
    /// A definition from the DSL (see ``WorkflowBuilder``).
    public init(name: String, version: Int = 1, timeout: Duration? = nil, output: JSONValue? = nil, defaultQueue: String? = nil,
                concurrency: ConcurrencySpec? = nil, @WorkflowBuilder steps: () -> [WorkflowStep]) {
        self.init(name: name, version: version, timeoutMilliseconds: timeout.map(Self.milliseconds),
                  output: output.map(ArgumentsTemplate.init), defaultQueue: defaultQueue, concurrency: concurrency, steps: steps())
    }

    static func milliseconds(_ d: Duration) -> Int {
        let (s, atto) = d.components
        return Int(s) * 1000 + Int(atto / 1_000_000_000_000_000)
    }
}

extension WorkflowStep {
    /// A step that runs one task.
    public static func task(_ id: String, _ name: String, after: [String] = [], queue: String? = nil, arguments: JSONValue = [:],
                            maxAttempts: Int? = nil, retry: RetryPolicy? = nil, timeout: Duration? = nil) -> WorkflowStep {
        WorkflowStep(id: id, after: after, .task(TaskSpec(
            name: name, queue: queue, arguments: ArgumentsTemplate(arguments), maxAttempts: maxAttempts, retry: retry,
            timeoutMilliseconds: timeout.map(WorkflowDefinition.milliseconds))))
    }

    /// A step that runs `task` once per element of the array at `over`; the
    /// arguments may use `${item}` and `${index}`.
    public static func map(_ id: String, after: [String] = [], over: String, task: String, queue: String? = nil,
                           arguments: JSONValue = ["item": "${item}"], join: JoinPolicy = .all, maxParallel: Int? = nil,
                           maxAttempts: Int? = nil, timeout: Duration? = nil) -> WorkflowStep {
        WorkflowStep(id: id, after: after, .map(MapSpec(
            over: ValuePath.lenient(over),
            task: TaskSpec(name: task, queue: queue, arguments: ArgumentsTemplate(arguments), maxAttempts: maxAttempts,
                           timeoutMilliseconds: timeout.map(WorkflowDefinition.milliseconds)),
            join: join, maxParallel: maxParallel)))
    }

    /// A fan-in over `after`, settled by `policy`.
    public static func join(_ id: String, after: [String], policy: JoinPolicy = .all) -> WorkflowStep {
        WorkflowStep(id: id, after: after, .join(policy))
    }

    /// Runs `then` steps if the condition holds, `else` steps if not.
    public static func branch(_ id: String, after: [String] = [], if condition: String, then: [String],
                              else otherwise: [String] = []) -> WorkflowStep {
        WorkflowStep(id: id, after: after, .branch(BranchSpec(if: Condition.lenient(condition), then: then, else: otherwise)))
    }

    /// Runs another registered workflow as this step.
    public static func workflow(_ id: String, _ name: String, version: Int? = nil, after: [String] = [],
                                input: JSONValue = [:]) -> WorkflowStep {
        WorkflowStep(id: id, after: after, .workflow(SubWorkflowSpec(name: name, version: version, input: ArgumentsTemplate(input))))
    }

    /// Waits.
    public static func delay(_ id: String, _ duration: Duration, after: [String] = []) -> WorkflowStep {
        WorkflowStep(id: id, after: after, .delay(milliseconds: WorkflowDefinition.milliseconds(duration)))
    }

    /// Waits for the signal `name`; its output is the signal's data.
    public static func signal(_ id: String, _ name: String, after: [String] = [], timeout: Duration? = nil,
                              onTimeout: SignalTimeout = .fail) -> WorkflowStep {
        WorkflowStep(id: id, after: after, .signal(SignalSpec(name: name, timeoutMilliseconds: timeout.map(WorkflowDefinition.milliseconds),
                                                               onTimeout: onTimeout)))
    }
}
