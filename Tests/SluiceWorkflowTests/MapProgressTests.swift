import Foundation
@testable import SluiceWorkflow
import Testing

/// A map's element counts are kept as events arrive (O(1) per element): they
/// must always equal a count of the elements themselves.
@Suite("Map progress counts")
struct MapProgressTests {
    /// The counts as a scan of the elements gives them.
    static func scanned(_ machine: WorkflowStateMachine, _ id: String) -> (running: Int, succeeded: Int, failed: Int) {
        let elements = machine.state.steps[id]?.elements ?? []
        return (elements.filter { $0.status == .running }.count, elements.filter { $0.status == .succeeded }.count,
                elements.filter { $0.status == .failed }.count)
    }

    static func check(_ machine: inout WorkflowStateMachine, _ id: String, sourceLocation: SourceLocation = #_sourceLocation) {
        guard machine.state.steps[id]?.status == .running else { return }
        let kept = machine.progress(ofMap: id)
        let truth = scanned(machine, id)
        #expect(kept.running == truth.running && kept.succeeded == truth.succeeded && kept.failed == truth.failed,
                "kept \(kept), elements say \(truth)", sourceLocation: sourceLocation)
        let elements = machine.state.steps[id]?.elements ?? []
        #expect(!elements.prefix(kept.cursor).contains { $0.status == .waiting }, "nothing waits below the cursor",
                sourceLocation: sourceLocation)
    }

    @Test("random successes, failures, retries and timeouts keep the counts exact; the output is every element's")
    func randomOrder() throws {
        var generator = SeededGenerator(seed: 42)
        for join in [JoinPolicy.tolerate, .all, .atLeast(150)] {
            let items = JSONValue.array((0..<200).map { .number(Double($0)) })
            let task = TaskSpec(name: "t", arguments: ArgumentsTemplate(["x": "${item}"]), timeoutMilliseconds: 60_000)
            let definition = WorkflowDefinition(name: "m", steps: [
                WorkflowStep(id: "each", .map(MapSpec(over: try ValuePath(parsing: "input.items"), task: task, join: join, maxParallel: 7))),
            ])
            var machine = try WorkflowStateMachine(definition: definition, runID: "r", input: ["items": items], createdAt: Date())
            var running: [StepTask] = []
            var timers: [String] = []
            func take(_ actions: [WorkflowAction]) {
                for action in actions {
                    if case .publish(let tasks) = action { running += tasks }
                    if case .scheduleTimer(let id, _) = action { timers.append(id) }
                }
            }
            take(machine.handle(.start(at: Date())))
            var now = Date()
            while !running.isEmpty, machine.state.steps["each"]?.status == .running {
                let task = running.remove(at: Int.random(in: 0..<running.count, using: &generator))
                now += 0.001
                switch Int.random(in: 0..<10, using: &generator) {
                case 0:
                    take(machine.handle(.taskRetrying(taskID: task.taskID, attempt: 2, error: "again", at: now)))
                    running.append(task)
                case 1:
                    take(machine.handle(.timerFired(timerID: task.taskID + "/~timeout", at: now)))
                case 2, 3:
                    take(machine.handle(.taskDead(taskID: task.taskID, attempt: 3, reason: "max_attempts", error: "no", at: now)))
                default:
                    take(machine.handle(.taskSucceeded(taskID: task.taskID, attempt: 1, output: .number(Double(task.index ?? -1)), at: now)))
                }
                Self.check(&machine, "each")
                #expect(Self.scanned(machine, "each").running <= 7, "parallelism kept")
            }
            let step = machine.state.steps["each"]!
            #expect(step.status != .running, "\(join): the map settled")
            if case .array(let outputs)? = step.output, let elements = step.elements {
                for (i, element) in elements.enumerated() where element.status == .succeeded {
                    #expect(outputs[i] == .number(Double(i)))
                }
            }
        }
    }

    @Test("a retried map counts again from its elements")
    func retry() throws {
        let definition = WorkflowDefinition(name: "m", steps: [
            WorkflowStep(id: "each", .map(MapSpec(over: try ValuePath(parsing: "input.items"), task: TaskSpec(name: "t"), maxParallel: 2))),
        ])
        var machine = try WorkflowStateMachine(definition: definition, runID: "r", input: ["items": [1, 2, 3]], createdAt: Date())
        var published: [StepTask] = []
        func take(_ actions: [WorkflowAction]) { for case .publish(let tasks) in actions { published += tasks } }
        take(machine.handle(.start(at: Date())))
        take(machine.handle(.taskDead(taskID: published[0].taskID, attempt: 3, reason: "max_attempts", error: "x", at: Date())))
        take(machine.handle(.taskSucceeded(taskID: published[1].taskID, attempt: 1, output: 2, at: Date())))
        take(machine.handle(.taskSucceeded(taskID: published[2].taskID, attempt: 1, output: 3, at: Date())))
        #expect(machine.state.status == .failed)
        published = []
        take(machine.handle(.retryStep(stepID: "each", rerun: false, at: Date())))
        #expect(published.map(\.index) == [0], "only the failed element runs again")
        Self.check(&machine, "each")
        take(machine.handle(.taskSucceeded(taskID: published[0].taskID, attempt: 1, output: 1, at: Date())))
        #expect(machine.state.status == .completed)
        #expect(machine.state.steps["each"]?.output == [1, 2, 3])
    }
}
