/// A reference into the data a workflow step can see: `input.user.id`,
/// `steps.fetch.output.items[0]`, `item` and `index` (inside a map step).
///
/// The first component names the root: `input` (the run's input), `steps`
/// (then a step id, then `output`, `status` or `error`), `item` or `index`.
public struct ValuePath: Sendable, Hashable, Codable, CustomStringConvertible {
    /// One part of a path: an object key or an array index.
    public enum Component: Sendable, Hashable {
        case key(String)
        case index(Int)
    }

    public var components: [Component]

    public init(components: [Component]) {
        self.components = components
    }

    /// Parses `a.b[0].c`; keys are letters, digits, `_` and `-`.
    public init(parsing text: String) throws(WorkflowError) {
        var components: [Component] = []
        var chars = Array(text)
        var i = 0
        func fail(_ why: String) -> WorkflowError {
            WorkflowError(.invalidPath, "path '\(text)': \(why)")
        }
        func isKeyChar(_ c: Character) -> Bool { c.isLetter || c.isNumber || c == "_" || c == "-" }
        while chars.first?.isWhitespace == true { chars.removeFirst() }
        while chars.last?.isWhitespace == true { chars.removeLast() }
        guard !chars.isEmpty else { throw fail("empty") }
        var expectKey = true
        while i < chars.count {
            let c = chars[i]
            if c == "[" {
                guard let close = chars[i...].firstIndex(of: "]") else { throw fail("'[' without ']'") }
                guard let n = Int(String(chars[(i + 1)..<close])), n >= 0 else { throw fail("an index must be a whole number ≥ 0") }
                guard !components.isEmpty else { throw fail("starts with an index") }
                components.append(.index(n))
                i = close + 1
                expectKey = false
            } else if c == "." {
                guard !expectKey, !components.isEmpty else { throw fail("unexpected '.'") }
                i += 1
                expectKey = true
            } else if isKeyChar(c) {
                guard expectKey else { throw fail("missing '.' before '\(c)'") }
                var j = i
                while j < chars.count, isKeyChar(chars[j]) { j += 1 }
                components.append(.key(String(chars[i..<j])))
                i = j
                expectKey = false
            } else {
                throw fail("unexpected character '\(c)'")
            }
        }
        guard !expectKey else { throw fail("ends with '.'") }
        self.components = components
    }

    /// A path that does not throw: text that does not parse is kept as an
    /// invalid path, which ``WorkflowDefinition/validate()`` reports (for the DSL).
    public static func lenient(_ text: String) -> ValuePath {
        (try? ValuePath(parsing: text)) ?? ValuePath(components: [.key(invalidMarker + text)])
    }

    static let invalidMarker = "\u{1}"

    /// Whether this path came from text that did not parse.
    public var isInvalid: Bool { root.hasPrefix(Self.invalidMarker) }

    public var description: String {
        if isInvalid { return String(root.dropFirst()) }
        var out = ""
        for c in components {
            switch c {
            case .key(let k): out += out.isEmpty ? k : ".\(k)"
            case .index(let n): out += "[\(n)]"
            }
        }
        return out
    }

    /// The root name (`input`, `steps`, `item`, `index`).
    public var root: String {
        if case .key(let k)? = components.first { return k }
        return ""
    }

    /// For `steps.<id>...`, the step id.
    public var stepID: String? {
        guard root == "steps", components.count >= 2, case .key(let id) = components[1] else { return nil }
        return id
    }

    /// Looks the path up in a scope object (`{"input": …, "steps": {…}, "item": …}`);
    /// nil when any part is missing.
    public func resolve(in scope: JSONValue) -> JSONValue? {
        var current: JSONValue? = scope
        for c in components {
            switch c {
            case .key(let k): current = current?[k]
            case .index(let n): current = current?[n]
            }
            if current == nil { return nil }
        }
        return current
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { try self.init(parsing: text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
