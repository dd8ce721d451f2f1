/// A definition checked once and its step graph worked out once, shared by
/// every run of it: a coordinator starts thousands of runs of one definition
/// per second, and each would otherwise validate it and sort its steps again.
public struct CompiledWorkflow: Sendable {
    public let definition: WorkflowDefinition
    /// Each step's dependencies.
    let graph: [String: [String]]
    /// The steps that depend on each step.
    let dependents: [String: [String]]
    /// Step ids in dependency order.
    let order: [String]
    let stepsByID: [String: WorkflowStep]
    /// The branch that targets a step, for steps a branch targets.
    let branchOf: [String: String]

    /// Validates `definition` and derives its graph.
    public init(_ definition: WorkflowDefinition) throws(WorkflowError) {
        try definition.validate()
        self.definition = definition
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
    }
}
