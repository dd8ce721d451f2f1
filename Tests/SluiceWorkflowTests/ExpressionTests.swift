import SluiceWorkflow
import Testing

@Suite("Paths, templates, conditions, durations, JSON")
struct ExpressionTests {
    let scope: JSONValue = [
        "input": ["user": ["id": 7, "name": "Ada", "tags": ["vip", "beta"]], "force": false],
        "steps": ["fetch": ["output": ["total": 120.5, "items": [1, 2, 3]], "status": "succeeded", "error": nil]],
    ]

    @Test("paths parse, print and resolve; bad ones are rejected with the reason")
    func paths() throws {
        let p = try ValuePath(parsing: "steps.fetch.output.items[2]")
        #expect(p.description == "steps.fetch.output.items[2]")
        #expect(p.root == "steps")
        #expect(p.stepID == "fetch")
        #expect(p.resolve(in: scope) == 3)
        #expect(try ValuePath(parsing: "input.missing").resolve(in: scope) == nil)
        #expect(try ValuePath(parsing: "input.user.tags[5]").resolve(in: scope) == nil)
        for bad in ["", "a..b", "a.", ".a", "a[x]", "a[-1]", "[0]", "a b", "a$"] {
            #expect(throws: WorkflowError.self, "\(bad)") { try ValuePath(parsing: bad) }
        }
        #expect(ValuePath.lenient("a..b").isInvalid)
        #expect(!ValuePath.lenient("a.b").isInvalid)
    }

    @Test("templates keep a whole reference's type and interpolate others as text")
    func templates() throws {
        let t = ArgumentsTemplate([
            "user": "${input.user}",
            "id": "${input.user.id}",
            "greeting": "hello ${input.user.name}, total ${steps.fetch.output.total}",
            "items": ["${steps.fetch.output.items[0]}", "plain"],
            "literal": "costs $${price}",
            "n": 5,
        ])
        let out = try t.render(in: scope)
        #expect(out["user"] == scope["input"]?["user"])
        #expect(out["id"] == 7)
        #expect(out["greeting"] == "hello Ada, total 120.5")
        #expect(out["items"] == [1, "plain"])
        #expect(out["literal"] == "costs ${price}")
        #expect(out["n"] == 5)
        #expect(try t.references().map(\.description).sorted() ==
            ["input.user", "input.user.id", "input.user.name", "steps.fetch.output.items[0]", "steps.fetch.output.total"])
        #expect(throws: WorkflowError.self) { try ArgumentsTemplate(["x": "${input.nope}"]).render(in: scope) }
        #expect(throws: WorkflowError.self) { try ArgumentsTemplate(["x": "${input.user"]).references() }
        #expect(throws: WorkflowError.self) { try ArgumentsTemplate(["x": "${a..b}"]).references() }
        // Strings are split once, when the template is made; one changed
        // afterwards is split as it renders, and equality is the value's.
        var changed = t
        changed.value = ["id": "${input.user.name}", "bad": "${input.user"]
        #expect(throws: WorkflowError.self) { try changed.render(in: scope) }
        changed.value = ["id": "${input.user.name}"]
        #expect(try changed.render(in: scope) == ["id": "Ada"])
        #expect(changed == ArgumentsTemplate(["id": "${input.user.name}"]))
        #expect(changed != t)
        // Two strings Swift holds equal (é composed, and e with an accent)
        // each render with their own bytes.
        let accents = ArgumentsTemplate(["a": "\u{e9} ${input.user.name}", "b": "e\u{301} ${input.user.name}"])
        let rendered = try accents.render(in: scope)
        guard case .string(let a)? = rendered["a"], case .string(let b)? = rendered["b"] else { Issue.record("not strings"); return }
        #expect(Array(a.utf8) == Array("\u{e9} Ada".utf8))
        #expect(Array(b.utf8) == Array("e\u{301} Ada".utf8))
    }

    @Test("conditions", arguments: [
        ("steps.fetch.output.total > 100", true),
        ("steps.fetch.output.total >= 120.5 and input.user.id == 7", true),
        ("steps.fetch.output.total < 100 || input.force", false),
        ("not input.force", true),
        ("!(input.user.id != 7)", true),
        ("'vip' in input.user.tags", true),
        ("'gold' in input.user.tags", false),
        ("'name' in input.user", true),
        ("'da' in input.user.name", true),
        ("input.user.name == \"Ada\"", true),
        ("input.user.name < 'Bob'", true),
        ("input.missing == null", true),
        ("input.missing", false),
        ("steps.fetch.status == 'succeeded' and (input.force or -1 < 0)", true),
        ("true and false or true", true),
        ("true and (false or false)", false),
        ("steps.fetch.output.items", true),
        ("1e2 == 100", true),
    ])
    func conditions(source: String, expected: Bool) throws {
        #expect(try Condition(source).evaluate(in: scope) == expected)
    }

    @Test("conditions that do not parse or cannot be evaluated give clear errors")
    func conditionErrors() throws {
        for bad in ["", "a ==", "(a", "a b", "a == 'x", "a # b", "and", "a..b == 1"] {
            #expect(throws: WorkflowError.self, "\(bad)") { try Condition(bad) }
        }
        #expect(Condition.lenient("a ==").parseError?.code == .invalidExpression)
        // Deep nesting and huge conditions are refused, not a stack overflow.
        #expect(throws: WorkflowError.self) { try Condition(String(repeating: "!", count: 100_000) + "true") }
        #expect(throws: WorkflowError.self) { try Condition(String(repeating: "(", count: 500) + "true" + String(repeating: ")", count: 500)) }
        #expect(try Condition(String(repeating: "(", count: 20) + "true" + String(repeating: ")", count: 20)).evaluate(in: scope))
        #expect(throws: WorkflowError.self) { try Condition("input.user.name > 3").evaluate(in: scope) }
        #expect(throws: WorkflowError.self) { try Condition("1 in 2").evaluate(in: scope) }
        #expect(try Condition("input.user.id == 7").references.map(\.description) == ["input.user.id"])
    }

    @Test("durations")
    func durations() throws {
        #expect(try WorkflowDuration.milliseconds("250ms") == 250)
        #expect(try WorkflowDuration.milliseconds("30s") == 30_000)
        #expect(try WorkflowDuration.milliseconds("5m") == 300_000)
        #expect(try WorkflowDuration.milliseconds("1h30m") == 5_400_000)
        #expect(try WorkflowDuration.milliseconds("1d") == 86_400_000)
        #expect(try WorkflowDuration.milliseconds("1.5") == 1500)
        for bad in ["", "5x", "m", "-1", "1h-5m"] {
            #expect(throws: WorkflowError.self, "\(bad)") { try WorkflowDuration.milliseconds(bad) }
        }
        #expect(WorkflowDuration.text(milliseconds: 5_400_250) == "1h30m250ms")
        #expect(WorkflowDuration.text(milliseconds: 0) == "0s")
    }

    @Test("JSON values parse and print canonically (sorted keys, integers without fractions)")
    func json() throws {
        let v = try JSONValue.parse(#"{"b":[1,2.5,"x\n\"y"],"a":null,"c":true}"#)
        #expect(v.jsonText == #"{"a":null,"b":[1,2.5,"x\n\"y"],"c":true}"#)
        #expect(try JSONValue.parse(v.jsonText) == v)
        #expect(JSONValue.number(3).jsonText == "3")
        #expect(JSONValue.string("\u{01}").jsonText == #""\u0001""#)
        #expect(throws: (any Error).self) { try JSONValue.parse("{") }
    }
}
