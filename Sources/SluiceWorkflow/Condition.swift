/// A branch condition in Sluice's small expression language.
///
/// ```
/// steps.check.output.total > 100 and not (input.vip == true)
/// steps.fetch.status == 'succeeded' || input.force
/// input.country in steps.rules.output.allowed
/// ```
///
/// * Operands: numbers, strings in single or double quotes, `true`, `false`,
///   `null`, and paths (see ``ValuePath``); a path that leads nowhere is `null`.
/// * Comparisons: `==` `!=` (any two values, deep equality), `<` `<=` `>` `>=`
///   (two numbers or two strings), `in` (an element of an array, a key of an
///   object, or a substring of a string).
/// * Logic: `and`/`&&`, `or`/`||`, `not`/`!`, parentheses. A value on its own
///   is true unless it is `null`, `false`, `0`, `""` or empty.
///
/// Precedence, lowest first: `or`, `and`, `not`, comparisons.
public struct Condition: Sendable, Hashable, Codable, CustomStringConvertible {
    public let source: String
    let root: Node

    indirect enum Node: Sendable, Hashable {
        case literal(JSONValue)
        case path(ValuePath)
        case not(Node)
        case and(Node, Node)
        case or(Node, Node)
        case compare(Node, Operator, Node)
    }

    enum Operator: String, Sendable, Hashable {
        case equal = "==", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">=", contains = "in"
    }

    /// Why the source did not parse, for conditions built with ``lenient(_:)``.
    public let parseError: WorkflowError?

    /// Longest condition accepted, and deepest nesting of `not` and parentheses.
    static let maxLength = 4096, maxDepth = 64

    public init(_ source: String) throws(WorkflowError) {
        self.source = source
        guard source.utf8.count <= Self.maxLength else {
            throw WorkflowError(.invalidExpression, "a condition must be at most \(Self.maxLength) bytes")
        }
        var parser = Parser(tokens: try Self.tokenize(source), source: source)
        let node = try parser.expression()
        guard parser.atEnd else { throw parser.error("unexpected '\(parser.peek!.text)'") }
        self.root = node
        self.parseError = nil
    }

    /// A condition that does not throw: a source that does not parse is kept
    /// with its error, which ``WorkflowDefinition/validate()`` reports (the
    /// DSL uses this, since a result builder cannot throw).
    public static func lenient(_ source: String) -> Condition {
        do { return try Condition(source) } catch { return Condition(source: source, error: error) }
    }

    private init(source: String, error: WorkflowError) {
        self.source = source
        self.root = .literal(.bool(false))
        self.parseError = error
    }

    public var description: String { source }

    /// Every path the condition reads, checked when the definition is validated.
    public var references: [ValuePath] {
        var out: [ValuePath] = []
        func walk(_ n: Node) {
            switch n {
            case .literal: break
            case .path(let p): out.append(p)
            case .not(let a): walk(a)
            case .and(let a, let b), .or(let a, let b), .compare(let a, _, let b):
                walk(a)
                walk(b)
            }
        }
        walk(root)
        return out
    }

    /// Evaluates the condition against a scope (`{"input": …, "steps": {…}}`).
    public func evaluate(in scope: JSONValue) throws(WorkflowError) -> Bool {
        try Self.value(root, scope).isTruthy
    }

    private static func value(_ node: Node, _ scope: JSONValue) throws(WorkflowError) -> JSONValue {
        switch node {
        case .literal(let v): return v
        case .path(let p): return p.resolve(in: scope) ?? .null
        case .not(let a): return .bool(!(try value(a, scope).isTruthy))
        case .and(let a, let b):
            guard try value(a, scope).isTruthy else { return .bool(false) }
            return .bool(try value(b, scope).isTruthy)
        case .or(let a, let b):
            if try value(a, scope).isTruthy { return .bool(true) }
            return .bool(try value(b, scope).isTruthy)
        case .compare(let a, let op, let b):
            return .bool(try compare(try value(a, scope), op, try value(b, scope)))
        }
    }

    private static func compare(_ l: JSONValue, _ op: Operator, _ r: JSONValue) throws(WorkflowError) -> Bool {
        switch op {
        case .equal: return l == r
        case .notEqual: return l != r
        case .contains:
            switch r {
            case .array(let a): return a.contains(l)
            case .object(let o):
                guard case .string(let key) = l else { return false }
                return o[key] != nil
            case .string(let s):
                guard case .string(let part) = l else { return false }
                return s.contains(part)
            case .null: return false
            default: throw WorkflowError(.evaluation, "'in' needs an array, object or string on its right, not a \(r.typeName)")
            }
        case .less, .lessOrEqual, .greater, .greaterOrEqual:
            let order: Int
            switch (l, r) {
            case (.number(let x), .number(let y)): order = x < y ? -1 : (x > y ? 1 : 0)
            case (.string(let x), .string(let y)): order = x < y ? -1 : (x > y ? 1 : 0)
            default:
                throw WorkflowError(.evaluation, "cannot order a \(l.typeName) and a \(r.typeName) with '\(op.rawValue)'")
            }
            switch op {
            case .less: return order < 0
            case .lessOrEqual: return order <= 0
            case .greater: return order > 0
            default: return order >= 0
            }
        }
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { try self.init(text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(source)
    }

    public static func == (a: Condition, b: Condition) -> Bool { a.source == b.source }
    public func hash(into hasher: inout Hasher) { hasher.combine(source) }

    // MARK: Tokens

    struct Token: Equatable {
        enum Kind: Equatable { case number(Double), string(String), word(String), symbol(String) }
        var kind: Kind
        var text: String
    }

    static func tokenize(_ s: String) throws(WorkflowError) -> [Token] {
        let chars = Array(s)
        var out: [Token] = []
        var i = 0
        func fail(_ why: String) -> WorkflowError { WorkflowError(.invalidExpression, "'\(s)': \(why)") }
        while i < chars.count {
            let c = chars[i]
            if c.isWhitespace {
                i += 1
            } else if c == "'" || c == "\"" {
                var j = i + 1
                var text = ""
                while j < chars.count, chars[j] != c {
                    if chars[j] == "\\", j + 1 < chars.count {
                        j += 1
                    }
                    text.append(chars[j])
                    j += 1
                }
                guard j < chars.count else { throw fail("unterminated string") }
                out.append(Token(kind: .string(text), text: String(chars[i...j])))
                i = j + 1
            } else if c.isNumber || (c == "-" && i + 1 < chars.count && chars[i + 1].isNumber && !Self.endsOperand(out)) {
                var j = i + 1
                while j < chars.count, chars[j].isNumber || chars[j] == "." || chars[j] == "e" || chars[j] == "E"
                    || ((chars[j] == "-" || chars[j] == "+") && (chars[j - 1] == "e" || chars[j - 1] == "E")) {
                    j += 1
                }
                let text = String(chars[i..<j])
                guard let n = Double(text) else { throw fail("bad number '\(text)'") }
                out.append(Token(kind: .number(n), text: text))
                i = j
            } else if c.isLetter || c == "_" {
                // A word or a path: letters, digits, '_', '-', '.', and [n] indexes.
                var j = i
                while j < chars.count, chars[j].isLetter || chars[j].isNumber || "_-.[]".contains(chars[j]) { j += 1 }
                let text = String(chars[i..<j])
                out.append(Token(kind: .word(text), text: text))
                i = j
            } else {
                let two = i + 1 < chars.count ? String(chars[i...(i + 1)]) : ""
                if ["==", "!=", "<=", ">=", "&&", "||"].contains(two) {
                    out.append(Token(kind: .symbol(two), text: two))
                    i += 2
                } else if "<>!()".contains(c) {
                    out.append(Token(kind: .symbol(String(c)), text: String(c)))
                    i += 1
                } else {
                    throw fail("unexpected character '\(c)'")
                }
            }
        }
        return out
    }

    /// Whether the last token ends an operand (so a following '-' would be subtraction, which we lack).
    private static func endsOperand(_ tokens: [Token]) -> Bool {
        guard let last = tokens.last else { return false }
        switch last.kind {
        case .number, .string, .word: return !["and", "or", "not", "in"].contains(last.text)
        case .symbol(let s): return s == ")"
        }
    }

    // MARK: Parser

    struct Parser {
        var tokens: [Token]
        var source: String
        var position = 0
        var depth = 0

        mutating func enter() throws(WorkflowError) {
            depth += 1
            guard depth <= Condition.maxDepth else { throw error("nested deeper than \(Condition.maxDepth) levels") }
        }

        var atEnd: Bool { position >= tokens.count }
        var peek: Token? { atEnd ? nil : tokens[position] }

        func error(_ why: String) -> WorkflowError { WorkflowError(.invalidExpression, "'\(source)': \(why)") }

        mutating func take(_ symbols: String...) -> String? {
            guard let t = peek else { return nil }
            let text: String
            switch t.kind {
            case .symbol(let s): text = s
            case .word(let w): text = w
            default: return nil
            }
            guard symbols.contains(text) else { return nil }
            position += 1
            return text
        }

        mutating func expression() throws(WorkflowError) -> Node {
            var left = try conjunction()
            while take("or", "||") != nil { left = .or(left, try conjunction()) }
            return left
        }

        mutating func conjunction() throws(WorkflowError) -> Node {
            var left = try negation()
            while take("and", "&&") != nil { left = .and(left, try negation()) }
            return left
        }

        mutating func negation() throws(WorkflowError) -> Node {
            if take("not", "!") != nil {
                try enter()
                defer { depth -= 1 }
                return .not(try negation())
            }
            return try comparison()
        }

        mutating func comparison() throws(WorkflowError) -> Node {
            let left = try operand()
            if let op = take("==", "!=", "<", "<=", ">", ">=", "in") {
                return .compare(left, Operator(rawValue: op)!, try operand())
            }
            return left
        }

        mutating func operand() throws(WorkflowError) -> Node {
            guard let t = peek else { throw error("ends where a value was expected") }
            position += 1
            switch t.kind {
            case .number(let n): return .literal(.number(n))
            case .string(let s): return .literal(.string(s))
            case .symbol("("):
                try enter()
                defer { depth -= 1 }
                let inner = try expression()
                guard take(")") != nil else { throw error("missing ')'") }
                return inner
            case .symbol(let s): throw error("unexpected '\(s)'")
            case .word(let w):
                switch w {
                case "true": return .literal(.bool(true))
                case "false": return .literal(.bool(false))
                case "null": return .literal(.null)
                case "and", "or", "not", "in": throw error("unexpected '\(w)'")
                default:
                    do { return .path(try ValuePath(parsing: w)) } catch { throw self.error(error.message) }
                }
            }
        }
    }
}
