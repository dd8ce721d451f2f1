import Foundation
import SluiceCore
import SluiceWorkflow
import Testing

@Suite("Workflow definitions: YAML, JSON, the DSL, validation")
struct DefinitionTests {
    static let ordersYAML = """
        name: orders
        version: 2
        timeout: 1h
        queue: orders
        output: { shipped: "${steps.ship.output}" }
        steps:
          - id: fetch
            task: orders.fetch
            arguments: { id: "${input.id}" }
            maxAttempts: 3
            retry: { base: 500ms, factor: 3, cap: 1m, jitter: 0 }
            timeout: 30s
          - id: check
            after: [fetch]
            branch: { if: "steps.fetch.output.total > 100", then: [review], else: [auto] }
          - id: review
            task: orders.review
          - id: auto
            task: orders.approve
          - id: approved
            after: [review, auto]
            join: { atLeast: 1 }
          - id: ship
            after: [approved]
            map: { over: steps.fetch.output.items, task: shipping.ship, arguments: { item: "${item}", n: "${index}" }, join: tolerate, maxParallel: 10 }
          - id: cool-off
            after: [ship]
            delay: 5m
          - id: invoice
            after: [cool-off]
            workflow: { name: invoicing, version: 1, input: { order: "${input.id}" } }
        """

    @Test("a YAML definition decodes, validates, and round-trips through JSON")
    func yamlRoundTrip() throws {
        let d = try WorkflowDefinition.decode(yaml: Self.ordersYAML)
        #expect(d.name == "orders")
        #expect(d.version == 2)
        #expect(d.timeoutMilliseconds == 3_600_000)
        #expect(d.defaultQueue == "orders")
        #expect(d.steps.map(\.id) == ["fetch", "check", "review", "auto", "approved", "ship", "cool-off", "invoice"])
        guard case .task(let fetch) = d.steps[0].kind else { Issue.record("fetch is not a task"); return }
        #expect(fetch.maxAttempts == 3)
        #expect(fetch.retry?.baseMilliseconds == 500)
        #expect(fetch.retry?.factor == 3)
        #expect(fetch.retry?.capMilliseconds == 60_000)
        #expect(fetch.timeoutMilliseconds == 30_000)
        guard case .map(let ship) = d.steps[5].kind else { Issue.record("ship is not a map"); return }
        #expect(ship.over.description == "steps.fetch.output.items")
        #expect(ship.join == .tolerate)
        #expect(ship.maxParallel == 10)
        #expect(d.steps[4].kind == .join(.atLeast(1)))
        #expect(d.steps[6].kind == .delay(milliseconds: 300_000))
        let again = try WorkflowDefinition.decode(json: try d.jsonBytes())
        #expect(again == d)
    }

    @Test("the DSL builds the same definition as the file")
    func dsl() throws {
        let built = WorkflowDefinition(name: "orders", version: 2, timeout: .seconds(3600), output: ["shipped": "${steps.ship.output}"],
                                       defaultQueue: "orders") {
            WorkflowStep.task("fetch", "orders.fetch", arguments: ["id": "${input.id}"], maxAttempts: 3,
                              retry: RetryPolicy(baseMilliseconds: 500, factor: 3, capMilliseconds: 60_000, jitter: 0),
                              timeout: .seconds(30))
            WorkflowStep.branch("check", after: ["fetch"], if: "steps.fetch.output.total > 100", then: ["review"], else: ["auto"])
            WorkflowStep.task("review", "orders.review")
            WorkflowStep.task("auto", "orders.approve")
            WorkflowStep.join("approved", after: ["review", "auto"], policy: .atLeast(1))
            WorkflowStep.map("ship", after: ["approved"], over: "steps.fetch.output.items", task: "shipping.ship",
                             arguments: ["item": "${item}", "n": "${index}"], join: .tolerate, maxParallel: 10)
            WorkflowStep.delay("cool-off", .seconds(300), after: ["ship"])
            WorkflowStep.workflow("invoice", "invoicing", version: 1, after: ["cool-off"], input: ["order": "${input.id}"])
        }
        try built.validate()
        let file = try WorkflowDefinition.decode(yaml: Self.ordersYAML)
        // RetryPolicy's maxAttempts is not part of the file's retry block; compare the rest.
        #expect(try built.jsonBytes() == file.jsonBytes())
    }

    static let invalid: [(String, String, WorkflowError.Code)] = [
        ("duplicate", "steps: [{id: a, task: t}, {id: a, task: t}]", .duplicateStep),
        ("unknown dependency", "steps: [{id: a, task: t, after: [b]}]", .unknownStep),
        ("self dependency", "steps: [{id: a, task: t, after: [a]}]", .cycle),
        ("cycle", "steps: [{id: a, task: t, after: [c]}, {id: b, task: t, after: [a]}, {id: c, task: t, after: [b]}]", .cycle),
        ("reference to a step that does not run before", "steps: [{id: a, task: t}, {id: b, task: t, arguments: {x: '${steps.a.output}'}}]", .unknownStep),
        ("reference to an unknown step", "steps: [{id: a, task: t, arguments: {x: '${steps.zz.output}'}}]", .unknownStep),
        ("bad root", "steps: [{id: a, task: t, arguments: {x: '${inptu.x}'}}]", .invalidPath),
        ("item outside a map", "steps: [{id: a, task: t, arguments: {x: '${item}'}}]", .invalidPath),
        ("bad step field", "steps: [{id: a, task: t}, {id: b, task: t, after: [a], arguments: {x: '${steps.a.outptu}'}}]", .invalidPath),
        ("bad template", "steps: [{id: a, task: t, arguments: {x: '${input.x'}}]", .invalidTemplate),
        ("bad condition", "steps: [{id: a, branch: {if: 'input.x ==', then: [b]}}, {id: b, task: t}]", .invalidDefinition),
        ("unreachable", "steps: [{id: a, branch: {if: input.x, then: [b], else: [c]}}, {id: b, task: t}, {id: c, task: t}, {id: d, task: t, after: [b, c]}]", .unreachableStep),
        ("join without dependencies", "steps: [{id: a, join: all}]", .invalidDefinition),
        ("impossible atLeast", "steps: [{id: a, task: t}, {id: j, after: [a], join: {atLeast: 2}}]", .invalidDefinition),
        ("two kinds", "steps: [{id: a, task: t, delay: 5s}]", .invalidDefinition),
        ("no kind", "steps: [{id: a}]", .invalidDefinition),
        ("bad duration", "steps: [{id: a, delay: soon}]", .invalidDefinition),
        ("bad join policy", "steps: [{id: a, task: t}, {id: j, after: [a], join: most}]", .invalidDefinition),
        ("no steps", "steps: []", .invalidDefinition),
        ("bad step id", "steps: [{id: 'a b', task: t}]", .invalidDefinition),
        ("branch to unknown", "steps: [{id: a, branch: {if: input.x, then: [zz]}}]", .unknownStep),
        ("both sides", "steps: [{id: a, branch: {if: input.x, then: [b], else: [b]}}, {id: b, task: t}]", .invalidDefinition),
        ("self sub-workflow", "steps: [{id: a, workflow: {name: w}}]", .cycle),
        ("bad map path", "steps: [{id: a, map: {over: 'input..x', task: t}}]", .invalidDefinition),
        ("misspelt step key", "steps: [{id: a, task: t, argumnets: {}}]", .invalidDefinition),
        ("misspelt map key", "steps: [{id: a, map: {over: input.x, task: t, maxParalel: 2}}]", .invalidDefinition),
        ("misspelt top-level key", "timeuot: 5s\nsteps: [{id: a, task: t}]", .invalidDefinition),
        ("task key on a map step", "steps: [{id: a, queue: q, map: {over: input.x, task: t}}]", .invalidDefinition),
        ("map atLeast 0", "steps: [{id: a, map: {over: input.x, task: t, join: {atLeast: 0}}}]", .invalidDefinition),
        ("bad output field", "output: {x: '${steps.a.outptu}'}\nsteps: [{id: a, task: t}]", .invalidPath),
    ]

    @Test("invalid definitions are refused before anything runs, each with its reason", arguments: invalid)
    func invalidDefinitions(what: String, steps: String, code: WorkflowError.Code) throws {
        do {
            _ = try WorkflowDefinition.decode(yaml: "name: w\n" + steps)
            Issue.record("\(what): accepted")
        } catch let error as WorkflowError {
            #expect(error.code == code, "\(what): \(error)")
            #expect(!error.description.isEmpty)
        }
    }

    @Test("a branch's two sides may merge through a join; the DSL reports bad text at validation")
    func mergeAndLenient() throws {
        let ok = WorkflowDefinition(name: "w") {
            WorkflowStep.branch("b", if: "input.x > 1", then: ["yes"], else: ["no"])
            WorkflowStep.task("yes", "t")
            WorkflowStep.task("no", "t")
            WorkflowStep.join("merge", after: ["yes", "no"], policy: .atLeast(1))
            WorkflowStep.task("after", "t", after: ["merge"])
        }
        try ok.validate()
        let bad = WorkflowDefinition(name: "w") { WorkflowStep.branch("b", if: "input.x >", then: ["c"]); WorkflowStep.task("c", "t") }
        #expect(throws: WorkflowError.self) { try bad.validate() }
        let badPath = WorkflowDefinition(name: "w") { WorkflowStep.map("m", over: "input..x", task: "t") }
        #expect(throws: WorkflowError.self) { try badPath.validate() }
    }

    @Test("malformed YAML and JSON give a clear error")
    func malformed() {
        #expect(throws: WorkflowError.self) { try WorkflowDefinition.decode(yaml: "name: [unclosed") }
        #expect(throws: WorkflowError.self) { try WorkflowDefinition.decode(json: Array("{\"name\": 1}".utf8)) }
        #expect(throws: WorkflowError.self) { try WorkflowDefinition.decode(json: Array("not json".utf8)) }
    }
}
