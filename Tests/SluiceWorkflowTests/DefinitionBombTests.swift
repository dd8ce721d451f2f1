import SluiceWorkflow
import Testing

/// Definitions built to exhaust the parser or the validator (issue 10).
@Suite("Definition bombs")
struct DefinitionBombTests {
    /// 7 levels of 10× aliases: 10 million nodes in about 450 bytes.
    static let aliasBomb: String = {
        var levels = ["    l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
        for i in 1...6 { levels.append("    l\(i): &l\(i) [" + Array(repeating: "*l\(i - 1)", count: 10).joined(separator: ", ") + "]") }
        return "name: bomb\nsteps:\n- id: s\n  task: t\n  arguments:\n" + levels.joined(separator: "\n") + "\n"
    }()

    @Test("a YAML alias bomb is refused at once as too_large; aliases within the budget still work")
    func aliasBomb() throws {
        #expect(Self.aliasBomb.utf8.count < 600)
        do {
            _ = try WorkflowDefinition.decode(yaml: Self.aliasBomb)
            Issue.record("the bomb was accepted")
        } catch let error as WorkflowError {
            #expect(error.code == .tooLarge)
            #expect(error.message.contains("YAML nodes"))
        }
        let modest = """
        name: reuse
        steps:
        - id: a
          task: t
          arguments: &shared {region: eu, tier: gold}
        - id: b
          task: t
          after: [a]
          arguments: *shared
        """
        let definition = try WorkflowDefinition.decode(yaml: modest)
        #expect(definition.steps.count == 2)
    }

    @Test("validation is linear: a 10,000-step chain with references validates; 10,001 steps are refused")
    func longChain() throws {
        func chain(_ n: Int) -> WorkflowDefinition {
            var steps = [WorkflowStep.task("s0", "t")]
            for i in 1..<n {
                steps.append(.task("s\(i)", "t", after: ["s\(i - 1)"], arguments: ["from": .string("${steps.s\(i - 1).output}"), "first": "${steps.s0.status}"]))
            }
            return WorkflowDefinition(name: "chain", steps: steps)
        }
        try chain(WorkflowDefinition.maxSteps).validate()
        #expect(throws: WorkflowError.self) { try chain(WorkflowDefinition.maxSteps + 1).validate() }
        // A reference to a step that does not surely run before is still caught.
        var steps = [WorkflowStep.task("a", "t"), .task("b", "t"), .task("c", "t", after: ["a"], arguments: ["x": "${steps.b.output}"])]
        #expect(throws: WorkflowError.self) { try WorkflowDefinition(name: "w", steps: steps).validate() }
        steps[2] = .task("c", "t", after: ["a"], arguments: ["x": "${steps.a.output}"])
        try WorkflowDefinition(name: "w", steps: steps).validate()
    }
}
