/// A step's task arguments: JSON in which strings may reference the run's
/// data with `${path}`.
///
/// A string that is exactly one reference (`"${steps.fetch.output}"`) is
/// replaced by the referenced value, whatever its type. References inside a
/// longer string are interpolated as text (strings as they are, other values
/// as compact JSON). `$${` stands for a literal `${`. A reference to a value
/// that does not exist is an error when the step is about to run.
public struct ArgumentsTemplate: Sendable, Hashable, Codable {
    public var value: JSONValue
    /// Each string of `value` with a reference, split once: a map renders
    /// its template for every element. Keyed by the string itself, so a
    /// `value` changed since only misses it (and is split as it renders).
    private let split: [String: [Piece]]

    public init(_ value: JSONValue) {
        self.value = value
        var split: [String: [Piece]] = [:]
        Self.split(value, into: &split)
        self.split = split
    }

    public init(from decoder: any Decoder) throws {
        self.init(try JSONValue(from: decoder))
    }

    public func encode(to encoder: any Encoder) throws {
        try value.encode(to: encoder)
    }

    public static func == (a: ArgumentsTemplate, b: ArgumentsTemplate) -> Bool { a.value == b.value }

    public func hash(into hasher: inout Hasher) { hasher.combine(value) }

    private static func split(_ value: JSONValue, into out: inout [String: [Piece]]) {
        forEachString(in: value) { s in
            // One that is not a valid template is left to fail when it is used.
            if s.contains("$"), out[s] == nil, let parts = try? pieces(s) { out[s] = parts }
        }
    }

    /// Calls `body` with every string in `value`, however deep.
    private static func forEachString<E: Error>(in value: JSONValue, _ body: (String) throws(E) -> Void) throws(E) {
        switch value {
        case .string(let s): try body(s)
        case .array(let a): for v in a { try forEachString(in: v, body) }
        case .object(let o): for (_, v) in o { try forEachString(in: v, body) }
        default: break
        }
    }

    /// `s` split into text and references.
    private func pieces(_ s: String) throws(WorkflowError) -> [Piece] {
        // Strings equal as Swift compares them (canonically) may differ in
        // their bytes: a split is used only for the very same bytes.
        if let i = split.index(forKey: s), split[i].key.utf8.elementsEqual(s.utf8) { return split[i].value }
        return try Self.pieces(s)
    }

    /// Every path the template references, checked when the definition is validated.
    public func references() throws(WorkflowError) -> [ValuePath] {
        var out: [ValuePath] = []
        try Self.forEachString(in: value) { (s: String) throws(WorkflowError) in
            for piece in try pieces(s) { if case .reference(let p) = piece { out.append(p) } }
        }
        return out
    }

    /// The arguments with every reference replaced from `scope`. Throws
    /// (code `tooLarge`) as soon as the result would be more than `maxBytes`
    /// of JSON: a template that repeats a large value must not build a huge
    /// task (references share storage until encoded, so the size is counted,
    /// not observed).
    public func render(in scope: JSONValue, maxBytes: Int = Int.max) throws(WorkflowError) -> JSONValue {
        var budget = Budget(remaining: maxBytes)
        return try render(value, scope, &budget)
    }

    /// Bytes of JSON still allowed; charged as the result is built.
    struct Budget {
        var remaining: Int
        let limit: Int

        init(remaining: Int) {
            self.remaining = remaining
            self.limit = remaining
        }

        mutating func charge(_ value: JSONValue) throws(WorkflowError) {
            remaining = value.chargeEncodedSize(against: remaining)
            try check()
        }

        mutating func charge(bytes: Int) throws(WorkflowError) {
            remaining -= bytes
            try check()
        }

        func check() throws(WorkflowError) {
            if remaining < 0 {
                throw WorkflowError(.tooLarge, "the rendered arguments exceed \(limit) bytes")
            }
        }
    }

    private func render(_ value: JSONValue, _ scope: JSONValue, _ budget: inout Budget) throws(WorkflowError) -> JSONValue {
        switch value {
        case .string(let s):
            let parts = try pieces(s)
            if parts.count == 1, case .reference(let path) = parts[0] {
                let v = try Self.lookup(path, scope)
                try budget.charge(v)
                return v
            }
            var text = ""
            for part in parts {
                switch part {
                case .text(let t): text += t
                case .reference(let path):
                    let v = try Self.lookup(path, scope)
                    // Counted before it is turned into text, which would allocate it.
                    try budget.charge(v)
                    if case .string(let s) = v { text += s } else { text += v.jsonText }
                }
            }
            try budget.charge(bytes: 2 + parts.reduce(0) { if case .text(let t) = $1 { $0 + t.utf8.count } else { $0 } })
            return .string(text)
        case .array(let a):
            var out: [JSONValue] = []
            try budget.charge(bytes: 2)
            for v in a { out.append(try render(v, scope, &budget)); try budget.charge(bytes: 1) }
            return .array(out)
        case .object(let o):
            var out: [String: JSONValue] = [:]
            try budget.charge(bytes: 2)
            for (k, v) in o {
                try budget.charge(bytes: k.utf8.count + 4)
                out[k] = try render(v, scope, &budget)
            }
            return .object(out)
        default:
            try budget.charge(value)
            return value
        }
    }

    private static func lookup(_ path: ValuePath, _ scope: JSONValue) throws(WorkflowError) -> JSONValue {
        guard let v = path.resolve(in: scope) else {
            throw WorkflowError(.evaluation, "'${\(path)}' refers to nothing")
        }
        return v
    }

    enum Piece: Equatable, Sendable {
        case text(String)
        case reference(ValuePath)
    }

    /// Splits a string into literal text and `${path}` references.
    static func pieces(_ s: String) throws(WorkflowError) -> [Piece] {
        guard s.contains("$") else { return [.text(s)] }
        var out: [Piece] = []
        var text = ""
        var i = s.startIndex
        while i < s.endIndex {
            if s[i...].hasPrefix("$${") {
                text += "${"
                i = s.index(i, offsetBy: 3)
            } else if s[i...].hasPrefix("${") {
                let start = s.index(i, offsetBy: 2)
                guard let close = s[start...].firstIndex(of: "}") else {
                    throw WorkflowError(.invalidTemplate, "'\(s)': '${' without '}'")
                }
                if !text.isEmpty { out.append(.text(text)) }
                text = ""
                let path: ValuePath
                do { path = try ValuePath(parsing: String(s[start..<close])) } catch {
                    throw WorkflowError(.invalidTemplate, "'\(s)': \(error.message)")
                }
                out.append(.reference(path))
                i = s.index(after: close)
            } else {
                text.append(s[i])
                i = s.index(after: i)
            }
        }
        if !text.isEmpty || out.isEmpty { out.append(.text(text)) }
        return out
    }
}
