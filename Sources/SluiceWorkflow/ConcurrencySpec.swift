import SluiceCore

/// How many runs of a workflow may be active at once: overall, or per key
/// rendered from each run's input (`${input.customer}`). Runs past the limit
/// wait as `pending` and start in arrival order as others finish.
public struct ConcurrencySpec: Sendable, Hashable {
    /// Active runs allowed per key (at least 1).
    public var limit: Int
    /// The key's template; it may use only `input`. Nil: one limit for all runs.
    public var key: ArgumentsTemplate?

    public init(limit: Int, key: ArgumentsTemplate? = nil) {
        self.limit = limit
        self.key = key
    }

    /// A limit per key: `.perKey("${input.customer}", limit: 1)`.
    public static func perKey(_ key: String, limit: Int) -> ConcurrencySpec {
        ConcurrencySpec(limit: limit, key: ArgumentsTemplate(.string(key)))
    }

    /// Keys longer than this are cut and end with a hash of the whole.
    public static let maxKeyBytes = 200

    /// The key of a run with this input: the rendered text (a value other
    /// than a string as its JSON), "" without a key template. Throws if the
    /// input has nothing where the key points.
    public func key(for input: JSONValue) throws(WorkflowError) -> String {
        guard let key else { return "" }
        let value: JSONValue
        do {
            value = try key.render(in: .object(["input": input]), maxBytes: 65_536)
        } catch {
            throw WorkflowError(error.code, "the concurrency key \(key.value.jsonText): \(error.message)")
        }
        switch value {
        case .null:
            throw WorkflowError(.invalidPath, "the concurrency key \(key.value.jsonText) is null for this input")
        case .string(let text):
            return WireLimits.boundedID(text, limit: Self.maxKeyBytes)
        default:
            return WireLimits.boundedID(value.jsonText, limit: Self.maxKeyBytes)
        }
    }
}

/// A run's place under its workflow's concurrency limit (``ConcurrencySpec``).
public struct RunSlot: Sendable, Hashable, Codable {
    /// The rendered key ("" for the workflow's overall limit).
    public var key: String
    /// The limit of the run's definition.
    public var limit: Int

    public init(key: String, limit: Int) {
        self.key = key
        self.limit = limit
    }
}
