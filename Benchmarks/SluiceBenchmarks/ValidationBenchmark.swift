import Foundation
import SluiceCore
public import SluiceWorkflow

/// How long definition checks take on hostile sizes: validating a long
/// `after` chain whose steps reference earlier ones, and refusing a YAML
/// alias bomb. Pure computation, no broker.
public struct ValidationBenchmark: Sendable {
    public struct Result: Sendable {
        public var steps: Int
        /// Seconds to validate the chain, per repetition.
        public var validateSeconds: [Double]
        /// Seconds to build a run's state machine for it (it validates too).
        public var machineSeconds: Double
        /// Seconds to refuse the alias bomb.
        public var bombSeconds: Double
        public var bombBytes: Int
    }

    public var steps: Int
    public var repetitions: Int

    public init(steps: Int = WorkflowDefinition.maxSteps, repetitions: Int = 3) {
        self.steps = steps
        self.repetitions = repetitions
    }

    /// A chain of `n` steps, each after the one before it and referring to
    /// its output and to the first step's status.
    public static func chain(_ n: Int) -> WorkflowDefinition {
        var steps = [WorkflowStep.task("s0", "t")]
        for i in 1..<max(1, n) {
            steps.append(.task("s\(i)", "t", after: ["s\(i - 1)"],
                               arguments: ["from": .string("${steps.s\(i - 1).output}"), "first": .string("${steps.s0.status}")]))
        }
        return WorkflowDefinition(name: "chain", steps: steps)
    }

    /// Seven levels of ten aliases each: ten million nodes in under 500 bytes.
    public static let aliasBomb: String = {
        var levels = ["    l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
        for i in 1...6 { levels.append("    l\(i): &l\(i) [" + Array(repeating: "*l\(i - 1)", count: 10).joined(separator: ", ") + "]") }
        return "name: bomb\nsteps:\n- id: s\n  task: t\n  arguments:\n" + levels.joined(separator: "\n") + "\n"
    }()

    public func run() throws -> Result {
        let definition = Self.chain(steps)
        var times: [Double] = []
        for _ in 0..<max(1, repetitions) {
            let start = ContinuousClock.now
            try definition.validate()
            times.append((ContinuousClock.now - start).timeInterval)
        }
        let machineStart = ContinuousClock.now
        _ = try WorkflowStateMachine(definition: definition, runID: "bench", input: [:], createdAt: Date())
        let machineSeconds = (ContinuousClock.now - machineStart).timeInterval
        let bombStart = ContinuousClock.now
        do {
            _ = try WorkflowDefinition.decode(yaml: Self.aliasBomb)
        } catch {}
        let bombSeconds = (ContinuousClock.now - bombStart).timeInterval
        return Result(steps: steps, validateSeconds: times, machineSeconds: machineSeconds, bombSeconds: bombSeconds,
                      bombBytes: Self.aliasBomb.utf8.count)
    }
}
