import SluiceCore

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
        guard steps.count <= Self.maxSteps else {
            throw WorkflowError(.tooLarge, "a workflow may have at most \(Self.maxSteps) steps; this one has \(steps.count)")
        }
        if let t = timeoutMilliseconds, t <= 0 { throw WorkflowError(.invalidDefinition, "timeout must be positive") }
        if let concurrency {
            guard concurrency.limit >= 1 else { throw WorkflowError(.invalidDefinition, "concurrency limit must be 1 or more") }
            for path in try concurrency.key?.references() ?? [] where path.isInvalid || path.root != "input" {
                throw WorkflowError(.invalidPath, "the concurrency key may use only the input, not '\(path)'")
            }
        }
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
        let order = try topologicalOrder(graph)
        try validateReferences(graph, order: order)
        try validateReachability(graph, order: order)
    }

    /// The most steps one definition may have (maps of many elements are
    /// one step): validation and every run's state grow with it.
    public static let maxSteps = 10_000

    static func isValidName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 200 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }

    /// A signal's name (also a URL path segment: `/v1/runs/{id}/signals/{name}`).
    public static func isValidSignalName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 128 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }

    static func isValidStepID(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 100 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_-".contains($0)) }
    }

    private func validateShape(_ step: WorkflowStep, known: Set<String>) throws(WorkflowError) {
        func checkTask(_ t: TaskSpec) throws(WorkflowError) {
            // The task name travels as an AMQP short string: bytes, not characters.
            guard !t.name.isEmpty, t.name.utf8.count <= 255 else {
                throw WorkflowError(.invalidDefinition, "a task name must be 1-255 bytes (this one is \(t.name.utf8.count))", step: step.id)
            }
            if let q = t.queue ?? defaultQueue, !Topology.isValidName(q) {
                throw WorkflowError(.invalidDefinition, "queue '\(q.prefix(120))' must be 1-100 letters, digits, '.', '_' or '-'", step: step.id)
            }
            if let m = t.maxAttempts, m < 1 { throw WorkflowError(.invalidDefinition, "maxAttempts must be 1 or more", step: step.id) }
            if let ms = t.timeoutMilliseconds, ms <= 0 { throw WorkflowError(.invalidDefinition, "timeout must be positive", step: step.id) }
        }
        if let undo = step.compensation {
            switch step.kind {
            case .task, .map: try checkTask(undo)
            default: throw WorkflowError(.invalidDefinition, "only task and map steps can have 'compensate'", step: step.id)
            }
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
        case .signal(let spec):
            guard Self.isValidSignalName(spec.name) else {
                throw WorkflowError(.invalidDefinition, "signal name '\(spec.name.prefix(200))' is not valid (1 to 128 of letters, digits, '_', '-' and '.')", step: step.id)
            }
            if let ms = spec.timeoutMilliseconds, ms <= 0 { throw WorkflowError(.invalidDefinition, "a signal's timeout must be positive", step: step.id) }
            if spec.onTimeout == .continue, spec.timeoutMilliseconds == nil {
                throw WorkflowError(.invalidDefinition, "onTimeout: continue needs a timeout", step: step.id)
            }
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

    /// Step ids, dependencies first (ties in definition order); throws on a
    /// cycle. Kahn's algorithm with the ready steps in a heap by position:
    /// O(n log n + e), so large definitions validate quickly.
    func topologicalOrder(_ graph: [String: [String]]) throws(WorkflowError) -> [String] {
        var index: [String: Int] = [:]
        for (i, step) in steps.enumerated() { index[step.id] = i }
        var waitingOn = [Int](repeating: 0, count: steps.count)
        var dependents = [[Int]](repeating: [], count: steps.count)
        for (i, step) in steps.enumerated() {
            for dep in Set(graph[step.id] ?? []) {
                guard let d = index[dep] else { continue }
                waitingOn[i] += 1
                dependents[d].append(i)
            }
        }
        var ready = MinHeap()
        for i in steps.indices where waitingOn[i] == 0 { ready.push(i) }
        var order: [String] = []
        order.reserveCapacity(steps.count)
        while let next = ready.pop() {
            order.append(steps[next].id)
            for d in dependents[next] {
                waitingOn[d] -= 1
                if waitingOn[d] == 0 { ready.push(d) }
            }
        }
        if order.count < steps.count {
            let stuck = steps.indices.filter { waitingOn[$0] > 0 }.prefix(20).map { "'\(steps[$0].id)'" }
            throw WorkflowError(.cycle, "the dependencies of \(stuck.joined(separator: ", ")) form a cycle")
        }
        return order
    }

    /// Which steps surely ran before which: one bit set per step (n² bits,
    /// 12.5 MB at the 10,000-step limit), filled in dependency order, so a
    /// long chain costs n²/64 word operations instead of n² set insertions.
    struct Ancestry {
        let index: [String: Int]
        private let words: Int
        private var bits: [UInt64]

        init(steps: [WorkflowStep], order: [String], graph: [String: [String]]) {
            var index: [String: Int] = [:]
            for (i, step) in steps.enumerated() { index[step.id] = i }
            self.index = index
            words = (steps.count + 63) / 64
            bits = [UInt64](repeating: 0, count: words * steps.count)
            for id in order {
                guard let i = index[id] else { continue }
                for dep in graph[id] ?? [] {
                    guard let d = index[dep] else { continue }
                    for w in 0..<words { bits[i * words + w] |= bits[d * words + w] }
                    bits[i * words + d / 64] |= 1 << UInt64(d % 64)
                }
            }
        }

        /// Whether `ancestor` surely ran before `step`.
        func contains(_ ancestor: String, before step: String) -> Bool {
            guard let i = index[step], let a = index[ancestor] else { return false }
            return bits[i * words + a / 64] & (1 << UInt64(a % 64)) != 0
        }
    }

    private func validateReferences(_ graph: [String: [String]], order: [String]) throws(WorkflowError) {
        let ancestry = Ancestry(steps: steps, order: order, graph: graph)
        for step in steps {
            func check(_ path: ValuePath, inMap: Bool, what: String, compensation: Bool = false) throws(WorkflowError) {
                if path.isInvalid { throw WorkflowError(.invalidPath, "\(what) path '\(path)' is not valid", step: step.id) }
                switch path.root {
                case "input": return
                case "output" where compensation: return
                case "steps" where compensation && path.stepID == step.id: return
                case "item", "index":
                    guard inMap else { throw WorkflowError(.invalidPath, "\(what) uses '\(path)' outside a map step", step: step.id) }
                case "steps":
                    guard let id = path.stepID else { throw WorkflowError(.invalidPath, "\(what) '\(path)' names no step", step: step.id) }
                    guard ancestry.index[id] != nil else { throw WorkflowError(.unknownStep, "\(what) refers to unknown step '\(id)'", step: step.id) }
                    guard ancestry.contains(id, before: step.id) else {
                        throw WorkflowError(.unknownStep, "\(what) refers to step '\(id)', which does not run before it (add it to 'after')", step: step.id)
                    }
                    if path.components.count >= 3, case .key(let field) = path.components[2], !["output", "status", "error"].contains(field) {
                        throw WorkflowError(.invalidPath, "\(what) '\(path)': a step has 'output', 'status' and 'error'", step: step.id)
                    }
                default:
                    throw WorkflowError(.invalidPath, "\(what) '\(path)' must start with input, steps, item or index\(compensation ? " (or output, in compensate)" : "")", step: step.id)
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
            case .join, .delay, .signal:
                break
            }
            if let undo = step.compensation {
                var inMap = false
                if case .map = step.kind { inMap = true }
                for p in try undo.arguments.references() { try check(p, inMap: inMap, what: "compensate arguments", compensation: true) }
            }
        }
        if let output {
            for p in try output.references() {
                guard !p.isInvalid, p.root == "input" || (p.root == "steps" && p.stepID.flatMap { ancestry.index[$0] } != nil) else {
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
    private func validateReachability(_ graph: [String: [String]], order: [String]) throws(WorkflowError) {
        var kinds: [String: WorkflowStep.Kind] = [:]
        for step in steps { kinds[step.id] = step.kind }
        // For each step, the branch sides it requires.
        struct Side: Hashable { var branch: String; var then: Bool }
        var targets: [String: Side] = [:]
        for step in steps {
            guard case .branch(let b) = step.kind else { continue }
            for t in b.then { targets[t] = Side(branch: step.id, then: true) }
            for t in b.otherwise { targets[t] = Side(branch: step.id, then: false) }
        }
        var required: [String: Set<Side>] = [:]
        for id in order {
            let deps = graph[id] ?? []
            var sides: Set<Side>
            if case .join? = kinds[id] {
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

/// A binary min-heap of step positions: the ready step that comes first.
struct MinHeap {
    private var items: [Int] = []

    mutating func push(_ value: Int) {
        items.append(value)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[parent] > items[i] else { break }
            items.swapAt(parent, i)
            i = parent
        }
    }

    mutating func pop() -> Int? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var smallest = i
                if l < items.count && items[l] < items[smallest] { smallest = l }
                if r < items.count && items[r] < items[smallest] { smallest = r }
                if smallest == i { break }
                items.swapAt(i, smallest)
                i = smallest
            }
        }
        return first
    }
}
