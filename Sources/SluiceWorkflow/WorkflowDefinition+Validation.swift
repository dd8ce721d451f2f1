extension WorkflowDefinition {
    /// Checks the definition before anything runs: names, duplicate and
    /// unknown step ids, cycles, references in templates and conditions (to
    /// steps that surely ran before), join and branch shapes, and steps that
    /// can never run. Throws the first problem found.
    public func validate() throws(WorkflowError) {
        guard Self.isValidName(name) else {
            throw WorkflowError(.invalidDefinition, "workflow name '\(name)' must be 1-200 letters, digits, '.', '_' or '-'")
        }
        guard version >= 1 else { throw WorkflowError(.invalidDefinition, "version must be 1 or more") }
        guard !steps.isEmpty else { throw WorkflowError(.invalidDefinition, "a workflow needs at least one step") }
        if let t = timeoutMilliseconds, t <= 0 { throw WorkflowError(.invalidDefinition, "timeout must be positive") }
        var seen: Set<String> = []
        for step in steps {
            guard Self.isValidStepID(step.id) else {
                throw WorkflowError(.invalidDefinition, "step id '\(step.id)' must be 1-100 letters, digits, '_' or '-'", step: step.id)
            }
            guard seen.insert(step.id).inserted else { throw WorkflowError(.duplicateStep, "duplicate step id", step: step.id) }
        }
        for step in steps {
            for dep in step.after {
                guard seen.contains(dep) else { throw WorkflowError(.unknownStep, "depends on unknown step '\(dep)'", step: step.id) }
                guard dep != step.id else { throw WorkflowError(.cycle, "depends on itself", step: step.id) }
            }
            try validateShape(step, known: seen)
        }
        let graph = try dependencyGraph()
        _ = try topologicalOrder(graph)
        try validateReferences(graph)
        try validateReachability(graph)
    }

    static func isValidName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 200 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }

    static func isValidStepID(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 100 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_-".contains($0)) }
    }

    private func validateShape(_ step: WorkflowStep, known: Set<String>) throws(WorkflowError) {
        func checkTask(_ t: TaskSpec) throws(WorkflowError) {
            guard !t.name.isEmpty, t.name.count <= 255 else { throw WorkflowError(.invalidDefinition, "a task name must be 1-255 characters", step: step.id) }
            if let q = t.queue ?? defaultQueue, !Self.isValidName(q) {
                throw WorkflowError(.invalidDefinition, "queue '\(q)' must be letters, digits, '.', '_' or '-'", step: step.id)
            }
            if let m = t.maxAttempts, m < 1 { throw WorkflowError(.invalidDefinition, "maxAttempts must be 1 or more", step: step.id) }
            if let ms = t.timeoutMilliseconds, ms <= 0 { throw WorkflowError(.invalidDefinition, "timeout must be positive", step: step.id) }
        }
        switch step.kind {
        case .task(let t):
            try checkTask(t)
        case .map(let m):
            try checkTask(m.task)
            if let p = m.maxParallel, p < 1 { throw WorkflowError(.invalidDefinition, "maxParallel must be 1 or more", step: step.id) }
            if case .atLeast(let n) = m.join, n < 1 { throw WorkflowError(.invalidDefinition, "atLeast needs a count of 1 or more", step: step.id) }
        case .join(let policy):
            guard !step.after.isEmpty else { throw WorkflowError(.invalidDefinition, "a join needs the steps it waits for in 'after'", step: step.id) }
            if case .atLeast(let n) = policy, n < 1 || n > step.after.count {
                throw WorkflowError(.invalidDefinition, "atLeast \(n) of \(step.after.count) steps can never be decided", step: step.id)
            }
        case .branch(let b):
            guard !b.then.isEmpty || !b.otherwise.isEmpty else {
                throw WorkflowError(.invalidDefinition, "a branch needs steps in 'then' or 'else'", step: step.id)
            }
            for target in b.then + b.otherwise {
                guard known.contains(target) else { throw WorkflowError(.unknownStep, "branches to unknown step '\(target)'", step: step.id) }
                guard target != step.id else { throw WorkflowError(.cycle, "branches to itself", step: step.id) }
            }
            if let both = Set(b.then).intersection(b.otherwise).first {
                throw WorkflowError(.invalidDefinition, "step '\(both)' is in both 'then' and 'else'", step: step.id)
            }
        case .workflow(let w):
            guard Self.isValidName(w.name) else { throw WorkflowError(.invalidDefinition, "sub-workflow name '\(w.name)' is not valid", step: step.id) }
            if w.name == name { throw WorkflowError(.cycle, "a workflow cannot run itself as a sub-workflow", step: step.id) }
        case .delay(let ms):
            guard ms >= 0 else { throw WorkflowError(.invalidDefinition, "a delay must not be negative", step: step.id) }
        }
    }

    /// Every step's dependencies, with branch targets depending on their branch.
    func dependencyGraph() throws(WorkflowError) -> [String: [String]] {
        var graph: [String: [String]] = [:]
        for step in steps { graph[step.id] = step.after }
        var branchOf: [String: String] = [:]
        for step in steps {
            guard case .branch(let b) = step.kind else { continue }
            for target in b.then + b.otherwise {
                if let other = branchOf[target], other != step.id {
                    throw WorkflowError(.invalidDefinition, "is the target of two branches ('\(other)' and '\(step.id)')", step: target)
                }
                branchOf[target] = step.id
                if !graph[target, default: []].contains(step.id) { graph[target, default: []].append(step.id) }
            }
        }
        return graph
    }

    /// Step ids, dependencies first (ties in definition order); throws on a cycle.
    func topologicalOrder(_ graph: [String: [String]]) throws(WorkflowError) -> [String] {
        var remaining = graph.mapValues { Set($0) }
        var order: [String] = []
        while order.count < steps.count {
            guard let next = steps.first(where: { remaining[$0.id]?.isEmpty == true }) else {
                let stuck = steps.map(\.id).filter { remaining[$0] != nil }
                throw WorkflowError(.cycle, "the dependencies of \(stuck.map { "'\($0)'" }.joined(separator: ", ")) form a cycle")
            }
            order.append(next.id)
            remaining[next.id] = nil
            for key in remaining.keys { remaining[key]?.remove(next.id) }
        }
        return order
    }

    /// Every step's transitive dependencies.
    func ancestors(_ graph: [String: [String]]) -> [String: Set<String>] {
        var memo: [String: Set<String>] = [:]
        func visit(_ id: String) -> Set<String> {
            if let known = memo[id] { return known }
            var out: Set<String> = []
            for dep in graph[id] ?? [] { out.insert(dep); out.formUnion(visit(dep)) }
            memo[id] = out
            return out
        }
        for step in steps { _ = visit(step.id) }
        return memo
    }

    private func validateReferences(_ graph: [String: [String]]) throws(WorkflowError) {
        let before = ancestors(graph)
        for step in steps {
            let visible = before[step.id] ?? []
            func check(_ path: ValuePath, inMap: Bool, what: String) throws(WorkflowError) {
                if path.isInvalid { throw WorkflowError(.invalidPath, "\(what) path '\(path)' is not valid", step: step.id) }
                switch path.root {
                case "input": return
                case "item", "index":
                    guard inMap else { throw WorkflowError(.invalidPath, "\(what) uses '\(path)' outside a map step", step: step.id) }
                case "steps":
                    guard let id = path.stepID else { throw WorkflowError(.invalidPath, "\(what) '\(path)' names no step", step: step.id) }
                    guard self.step(id) != nil else { throw WorkflowError(.unknownStep, "\(what) refers to unknown step '\(id)'", step: step.id) }
                    guard visible.contains(id) else {
                        throw WorkflowError(.unknownStep, "\(what) refers to step '\(id)', which does not run before it (add it to 'after')", step: step.id)
                    }
                    if path.components.count >= 3, case .key(let field) = path.components[2], !["output", "status", "error"].contains(field) {
                        throw WorkflowError(.invalidPath, "\(what) '\(path)': a step has 'output', 'status' and 'error'", step: step.id)
                    }
                default:
                    throw WorkflowError(.invalidPath, "\(what) '\(path)' must start with input, steps, item or index", step: step.id)
                }
            }
            switch step.kind {
            case .task(let t):
                for p in try t.arguments.references() { try check(p, inMap: false, what: "arguments") }
            case .map(let m):
                try check(m.over, inMap: false, what: "map over")
                for p in try m.task.arguments.references() { try check(p, inMap: true, what: "arguments") }
            case .branch(let b):
                if let e = b.condition.parseError { throw WorkflowError(e.code, e.message, step: step.id) }
                for p in b.condition.references { try check(p, inMap: false, what: "condition") }
            case .workflow(let w):
                for p in try w.input.references() { try check(p, inMap: false, what: "input") }
            case .join, .delay:
                break
            }
        }
        if let output {
            for p in try output.references() {
                guard !p.isInvalid, p.root == "input" || (p.root == "steps" && p.stepID.flatMap { self.step($0) } != nil) else {
                    throw WorkflowError(.invalidPath, "the workflow output refers to '\(p)', which is not the input or a step")
                }
                if p.root == "steps", p.components.count >= 3, case .key(let field) = p.components[2], !["output", "status", "error"].contains(field) {
                    throw WorkflowError(.invalidPath, "the workflow output '\(p)': a step has 'output', 'status' and 'error'")
                }
            }
        }
    }

    /// Finds steps that can never run: a step (not a join) that needs both
    /// sides of one branch, since one side is always skipped.
    private func validateReachability(_ graph: [String: [String]]) throws(WorkflowError) {
        // For each step, the branch sides it requires.
        struct Side: Hashable { var branch: String; var then: Bool }
        var targets: [String: Side] = [:]
        for step in steps {
            guard case .branch(let b) = step.kind else { continue }
            for t in b.then { targets[t] = Side(branch: step.id, then: true) }
            for t in b.otherwise { targets[t] = Side(branch: step.id, then: false) }
        }
        var required: [String: Set<Side>] = [:]
        for id in try topologicalOrder(graph) {
            let deps = graph[id] ?? []
            var sides: Set<Side>
            if case .join? = step(id)?.kind {
                // A join runs if any of its dependencies runs.
                var common: Set<Side>?
                for dep in deps {
                    let theirs = required[dep] ?? []
                    common = common.map { $0.intersection(theirs) } ?? theirs
                }
                sides = common ?? []
            } else {
                sides = deps.reduce(into: Set<Side>()) { $0.formUnion(required[$1] ?? []) }
            }
            if let own = targets[id] { sides.insert(own) }
            if let conflict = sides.first(where: { sides.contains(Side(branch: $0.branch, then: !$0.then)) }) {
                throw WorkflowError(.unreachableStep,
                                    "can never run: it needs both sides of branch '\(conflict.branch)' (merge them with a join step)", step: id)
            }
            required[id] = sides
        }
    }
}
