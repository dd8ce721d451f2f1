/// A named, versioned workflow: steps whose dependencies form a DAG.
///
/// Build one with the result-builder DSL (``WorkflowBuilder``) or decode it from
/// JSON or YAML (``WorkflowDefinition/decode(json:)``,
/// ``WorkflowDefinition/decode(yaml:)``); either way, ``validate()`` runs
/// before anything is registered or started.
public struct WorkflowDefinition: Sendable, Hashable {
    public var name: String
    public var version: Int
    public var steps: [WorkflowStep]
    /// The whole run fails if it has not finished this long after it started.
    public var timeoutMilliseconds: Int?
    /// The run's output; nil for an object of the outputs of the steps nothing depends on.
    public var output: ArgumentsTemplate?
    /// Queue for task steps that name none.
    public var defaultQueue: String?
    /// How many of its runs may be active at once (per key); nil for no limit.
    public var concurrency: ConcurrencySpec?

    public init(name: String, version: Int = 1, timeoutMilliseconds: Int? = nil, output: ArgumentsTemplate? = nil,
                defaultQueue: String? = nil, concurrency: ConcurrencySpec? = nil, steps: [WorkflowStep]) {
        self.name = name
        self.version = version
        self.steps = steps
        self.timeoutMilliseconds = timeoutMilliseconds
        self.output = output
        self.defaultQueue = defaultQueue
        self.concurrency = concurrency
    }

    /// The step with an id.
    public func step(_ id: String) -> WorkflowStep? {
        steps.first { $0.id == id }
    }
}
