import Foundation

/// Counts of a map step's elements, kept as elements change, so that an
/// element's event costs O(1) instead of a scan of every element (which made
/// a map of n elements cost O(n²)). A cache derived from `state`: dropped
/// whenever a step's elements are replaced wholesale, rebuilt on next use.
struct MapProgress: Sendable {
    var running = 0
    var succeeded = 0
    var failed = 0
    /// No element below this index is waiting.
    var cursor = 0
}

extension WorkflowStateMachine {
    /// The counts of map step `id`, from the cache or from its elements.
    mutating func progress(ofMap id: String) -> MapProgress {
        if let cached = mapProgress[id] { return cached }
        var progress = MapProgress()
        var cursor: Int?
        let elements = state.steps[id]?.elements ?? []
        for (i, element) in elements.enumerated() {
            switch element.status {
            case .running: progress.running += 1
            case .succeeded: progress.succeeded += 1
            case .failed: progress.failed += 1
            case .waiting: if cursor == nil { cursor = i }
            default: break
            }
        }
        progress.cursor = cursor ?? elements.count
        mapProgress[id] = progress
        return progress
    }

    /// The generation and element count of step `id` if it is a running map
    /// step. (A copy of the step lives only inside this call: holding one
    /// while writing an element would copy every element.)
    func runningMap(_ id: String) -> (generation: Int, count: Int)? {
        guard let step = state.steps[id], step.status == .running, let elements = step.elements else { return nil }
        return (step.generation, elements.count)
    }

    /// Whether element `index` of step `id`, at `generation`, is running
    /// (`stepRunning`: and the step itself too).
    func elementIsRunning(_ id: String, generation: Int, _ index: Int, stepRunning: Bool = true) -> Bool {
        guard let step = state.steps[id], step.generation == generation, !stepRunning || step.status == .running,
              let elements = step.elements, elements.indices.contains(index) else { return false }
        return elements[index].status == .running
    }

    /// Settles a running element in place and counts it.
    mutating func settleElement(_ id: String, _ index: Int, attempt: Int?, result: Result<JSONValue, StepFailure>) {
        var progress = progress(ofMap: id)
        changedElements[id, default: []].insert(index)
        if let attempt {
            state.steps[id]!.elements![index].attempts = max(state.steps[id]!.elements![index].attempts, attempt)
        }
        switch result {
        case .success(let output):
            state.steps[id]!.elements![index].status = .succeeded
            state.steps[id]!.elements![index].output = output
            progress.succeeded += 1
            noteCompletedWork(id)
        case .failure(let failure):
            state.steps[id]!.elements![index].status = .failed
            state.steps[id]!.elements![index].error = failure.message
            progress.failed += 1
        }
        progress.running -= 1
        mapProgress[id] = progress
    }
}

extension WorkflowStateMachine {
    /// The map elements changed since the last call (and forgets them).
    public mutating func takeElementChanges() -> ElementChanges {
        guard !changedElements.isEmpty || !replacedElements.isEmpty else { return ElementChanges() }
        var changes = ElementChanges()
        for id in replacedElements.sorted() {
            changes.replaced.append(id)
            guard let elements = state.steps[id]?.elements else { continue }
            for (i, element) in elements.enumerated() where element.status != .waiting {
                changes.elements.append(ElementRow(step: id, index: i, element: element))
            }
        }
        for (id, indices) in changedElements where !replacedElements.contains(id) {
            guard let elements = state.steps[id]?.elements else { continue }
            for i in indices.sorted() where elements.indices.contains(i) {
                changes.elements.append(ElementRow(step: id, index: i, element: elements[i]))
            }
        }
        changedElements = [:]
        replacedElements = []
        return changes
    }
}
