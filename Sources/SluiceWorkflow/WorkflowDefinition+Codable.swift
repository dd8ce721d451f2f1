import Foundation
import SluiceCore
import Yams

// The file format (JSON or YAML), documented with examples in docs/workflows.md:
//
//   name: orders          version: 1          timeout: 1h          queue: default-queue
//   concurrency: { limit: 1, key: "${input.customer}" }    (key optional: one limit for all runs)
//   output: { total: "${steps.charge.output.total}" }
//   steps:
//     - id: fetch, task: orders.fetch, queue: q, arguments: {...}, maxAttempts: 3,
//       retry: { base: 1s, factor: 2, cap: 10m, jitter: 0.1 }, timeout: 30s
//     - id: each,  after: [fetch], map: { over: steps.fetch.output.items, task: ..., arguments: { item: "${item}" },
//       join: all | failFast | tolerate | { atLeast: N }, maxParallel: 50 }
//     - id: both,  after: [a, b], join: all
//     - id: check, after: [fetch], branch: { if: "steps.fetch.output.total > 100", then: [review], else: [ship] }
//     - id: child, workflow: { name: invoice, version: 2, input: {...} }
//     - id: pause, delay: 5m
//     - id: approval, signal: { name: approved, timeout: 72h, onTimeout: fail | continue }   (or signal: approved)
//     - id: book, task: ..., compensate: { task: ..., arguments: { id: "${output.id}" }, queue, maxAttempts, retry }
//       (task and map steps; a map's arguments may use ${item}, ${index} and ${output}, the element's)

extension WorkflowDefinition: Codable {
    enum Keys: String, CodingKey, CaseIterable { case name, version, timeout, output, queue, concurrency, steps }
    enum ConcurrencyKeys: String, CodingKey, CaseIterable { case limit, key }

    public init(from decoder: any Decoder) throws {
        try UnknownKeys.check(decoder, allowed: Keys.self, in: "the workflow")
        let c = try decoder.container(keyedBy: Keys.self)
        name = try c.decode(String.self, forKey: .name)
        version = try c.decodeIfPresent(Int.self, forKey: .version) ?? 1
        timeoutMilliseconds = try c.decodeDurationIfPresent(forKey: .timeout)
        output = try c.decodeIfPresent(ArgumentsTemplate.self, forKey: .output)
        defaultQueue = try c.decodeIfPresent(String.self, forKey: .queue)
        if c.contains(.concurrency) {
            try UnknownKeys.check(c, .concurrency, allowed: ConcurrencyKeys.self, in: "concurrency")
            let n = try c.nestedContainer(keyedBy: ConcurrencyKeys.self, forKey: .concurrency)
            concurrency = ConcurrencySpec(limit: try n.decode(Int.self, forKey: .limit),
                                          key: try n.decodeIfPresent(ArgumentsTemplate.self, forKey: .key))
        } else {
            concurrency = nil
        }
        steps = try c.decode([WorkflowStep].self, forKey: .steps)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(name, forKey: .name)
        try c.encode(version, forKey: .version)
        if let timeoutMilliseconds { try c.encode(WorkflowDuration.text(milliseconds: timeoutMilliseconds), forKey: .timeout) }
        try c.encodeIfPresent(output, forKey: .output)
        try c.encodeIfPresent(defaultQueue, forKey: .queue)
        if let concurrency {
            var n = c.nestedContainer(keyedBy: ConcurrencyKeys.self, forKey: .concurrency)
            try n.encode(concurrency.limit, forKey: .limit)
            try n.encodeIfPresent(concurrency.key, forKey: .key)
        }
        try c.encode(steps, forKey: .steps)
    }

    /// Decodes and validates a definition from JSON.
    public static func decode(json: [UInt8]) throws -> WorkflowDefinition {
        let definition: WorkflowDefinition
        do {
            definition = try JSONDecoder().decode(WorkflowDefinition.self, from: Data(json))
        } catch let error as DecodingError {
            throw WorkflowError(.invalidDefinition, Self.describe(error))
        }
        try definition.validate()
        return definition
    }

    /// Decodes and validates a definition from YAML (JSON is YAML too).
    ///
    /// YAML aliases are allowed, but a definition may expand to at most
    /// ``maxYAMLNodes`` nodes: a few bytes of nested aliases can otherwise
    /// stand for billions (a "billion laughs" bomb).
    public static func decode(yaml: String) throws -> WorkflowDefinition {
        let definition: WorkflowDefinition
        do {
            guard let root = try Yams.compose(yaml: yaml) else {
                throw WorkflowError(.invalidDefinition, "the YAML document is empty")
            }
            // Aliases share their anchor's node, so the tree is counted as it
            // would be expanded, stopping at the budget.
            var budget = maxYAMLNodes
            guard Self.fits(root, &budget) else {
                throw WorkflowError(.tooLarge, "the definition expands to more than \(maxYAMLNodes) YAML nodes (aliases included)")
            }
            definition = try YAMLDecoder().decode(WorkflowDefinition.self, from: root)
        } catch let error as DecodingError {
            throw WorkflowError(.invalidDefinition, Self.describe(error))
        } catch let error as YamlError {
            throw WorkflowError(.invalidDefinition, "not valid YAML: \(error)")
        }
        try definition.validate()
        return definition
    }

    /// The most YAML nodes a definition may expand to, aliases counted as
    /// many times as they are used.
    public static let maxYAMLNodes = 200_000

    /// Whether `node`, expanded, fits in `budget` nodes (which it spends).
    private static func fits(_ node: Node, _ budget: inout Int) -> Bool {
        budget -= 1
        if budget < 0 { return false }
        switch node {
        case .mapping(let mapping):
            for (key, value) in mapping {
                guard fits(key, &budget), fits(value, &budget) else { return false }
            }
        case .sequence(let sequence):
            for item in sequence {
                guard fits(item, &budget) else { return false }
            }
        case .scalar, .alias:
            break
        }
        return true
    }

    /// JSON with sorted keys (the form the coordinator stores).
    public func jsonBytes() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(self))
    }

    /// A decoding error as one line: what is wrong, and where.
    public static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let p = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return p.isEmpty ? "" : " at \(p.hasPrefix(".") ? String(p.dropFirst()) : p)"
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing '\(key.stringValue)'\(path(context))"
        case .typeMismatch(let type, let context): return "expected \(type)\(path(context)): \(context.debugDescription)"
        case .valueNotFound(let type, let context): return "missing \(type)\(path(context))"
        case .dataCorrupted(let context): return "\(context.debugDescription)\(path(context))"
        @unknown default: return "\(error)"
        }
    }
}

extension WorkflowStep: Codable {
    enum Keys: String, CodingKey, CaseIterable {
        case id, after, task, queue, arguments, maxAttempts, retry, timeout, map, join, branch, workflow, delay, signal, compensate
    }

    enum CompensateKeys: String, CodingKey, CaseIterable { case task, queue, arguments, maxAttempts, retry }

    enum MapKeys: String, CodingKey, CaseIterable { case over, task, queue, arguments, maxAttempts, retry, timeout, join, maxParallel }
    enum BranchKeys: String, CodingKey, CaseIterable { case `if`, then, `else` }
    enum WorkflowKeys: String, CodingKey, CaseIterable { case name, version, input }
    enum SignalKeys: String, CodingKey, CaseIterable { case name, timeout, onTimeout }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        id = try c.decode(String.self, forKey: .id)
        try UnknownKeys.check(decoder, allowed: Keys.self, in: "step '\(id)'")
        after = try c.decodeIfPresent([String].self, forKey: .after) ?? []
        let kinds = [Keys.task, .map, .join, .branch, .workflow, .delay, .signal].filter { c.contains($0) }
        guard kinds.count == 1 else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: c.codingPath,
                debugDescription: "step '\(id)' needs exactly one of task, map, join, branch, workflow, delay, signal (has \(kinds.isEmpty ? "none" : kinds.map(\.stringValue).joined(separator: ", ")))"))
        }
        if kinds[0] != .task, let misplaced = [Keys.queue, .arguments, .maxAttempts, .retry, .timeout].first(where: { c.contains($0) }) {
            throw DecodingError.dataCorrupted(.init(
                codingPath: c.codingPath,
                debugDescription: "step '\(id)': '\(misplaced.stringValue)' belongs to a task step\(kinds[0] == .map ? " (for a map, put it inside 'map')" : "")"))
        }
        switch kinds[0] {
        case .task:
            kind = .task(try Self.decodeTask(c, nameKey: .task, queue: .queue, arguments: .arguments, maxAttempts: .maxAttempts,
                                             retry: .retry, timeout: .timeout))
        case .map:
            try UnknownKeys.check(c, .map, allowed: MapKeys.self, in: "step '\(id)' map")
            let m = try c.nestedContainer(keyedBy: MapKeys.self, forKey: .map)
            var task = try Self.decodeTask(m, nameKey: .task, queue: .queue, arguments: .arguments, maxAttempts: .maxAttempts,
                                           retry: .retry, timeout: .timeout)
            if !m.contains(.arguments) { task.arguments = ArgumentsTemplate(["item": "${item}"]) }
            kind = .map(MapSpec(over: try m.decode(ValuePath.self, forKey: .over), task: task,
                                join: try m.decodeIfPresent(JoinPolicy.self, forKey: .join) ?? .all,
                                maxParallel: try m.decodeIfPresent(Int.self, forKey: .maxParallel)))
        case .join:
            kind = .join(try c.decode(JoinPolicy.self, forKey: .join))
        case .branch:
            try UnknownKeys.check(c, .branch, allowed: BranchKeys.self, in: "step '\(id)' branch")
            let b = try c.nestedContainer(keyedBy: BranchKeys.self, forKey: .branch)
            kind = .branch(BranchSpec(if: try b.decode(Condition.self, forKey: .if),
                                      then: try b.decodeIfPresent([String].self, forKey: .then) ?? [],
                                      else: try b.decodeIfPresent([String].self, forKey: .else) ?? []))
        case .workflow:
            try UnknownKeys.check(c, .workflow, allowed: WorkflowKeys.self, in: "step '\(id)' workflow")
            let w = try c.nestedContainer(keyedBy: WorkflowKeys.self, forKey: .workflow)
            kind = .workflow(SubWorkflowSpec(name: try w.decode(String.self, forKey: .name),
                                             version: try w.decodeIfPresent(Int.self, forKey: .version),
                                             input: try w.decodeIfPresent(ArgumentsTemplate.self, forKey: .input)
                                                 ?? ArgumentsTemplate(.object([:]))))
        case .signal:
            if let name = try? c.decode(String.self, forKey: .signal) {
                kind = .signal(SignalSpec(name: name))
            } else {
                try UnknownKeys.check(c, .signal, allowed: SignalKeys.self, in: "step '\(id)' signal")
                let s = try c.nestedContainer(keyedBy: SignalKeys.self, forKey: .signal)
                kind = .signal(SignalSpec(name: try s.decode(String.self, forKey: .name),
                                          timeoutMilliseconds: try s.decodeDurationIfPresent(forKey: .timeout),
                                          onTimeout: try s.decodeIfPresent(SignalTimeout.self, forKey: .onTimeout) ?? .fail))
            }
        default:
            kind = .delay(milliseconds: try c.decodeDurationIfPresent(forKey: .delay) ?? 0)
        }
        if c.contains(.compensate) {
            try UnknownKeys.check(c, .compensate, allowed: CompensateKeys.self, in: "step '\(id)' compensate")
            let u = try c.nestedContainer(keyedBy: CompensateKeys.self, forKey: .compensate)
            compensation = TaskSpec(name: try u.decode(String.self, forKey: .task),
                                    queue: try u.decodeIfPresent(String.self, forKey: .queue),
                                    arguments: try u.decodeIfPresent(ArgumentsTemplate.self, forKey: .arguments) ?? ArgumentsTemplate(.object([:])),
                                    maxAttempts: try u.decodeIfPresent(Int.self, forKey: .maxAttempts),
                                    retry: try u.decodeIfPresent(RetrySpec.self, forKey: .retry)?.policy)
        } else {
            compensation = nil
        }
    }

    private static func decodeTask<K: CodingKey>(_ c: KeyedDecodingContainer<K>, nameKey: K, queue: K, arguments: K, maxAttempts: K,
                                                 retry: K, timeout: K) throws -> TaskSpec {
        TaskSpec(name: try c.decode(String.self, forKey: nameKey),
                 queue: try c.decodeIfPresent(String.self, forKey: queue),
                 arguments: try c.decodeIfPresent(ArgumentsTemplate.self, forKey: arguments) ?? ArgumentsTemplate(.object([:])),
                 maxAttempts: try c.decodeIfPresent(Int.self, forKey: maxAttempts),
                 retry: try c.decodeIfPresent(RetrySpec.self, forKey: retry)?.policy,
                 timeoutMilliseconds: try c.decodeDurationIfPresent(forKey: timeout))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(id, forKey: .id)
        if !after.isEmpty { try c.encode(after, forKey: .after) }
        switch kind {
        case .task(let t):
            try c.encode(t.name, forKey: .task)
            try c.encodeIfPresent(t.queue, forKey: .queue)
            try c.encode(t.arguments, forKey: .arguments)
            try c.encodeIfPresent(t.maxAttempts, forKey: .maxAttempts)
            try c.encodeIfPresent(t.retry.map(RetrySpec.init), forKey: .retry)
            if let ms = t.timeoutMilliseconds { try c.encode(WorkflowDuration.text(milliseconds: ms), forKey: .timeout) }
        case .map(let m):
            var n = c.nestedContainer(keyedBy: MapKeys.self, forKey: .map)
            try n.encode(m.over, forKey: .over)
            try n.encode(m.task.name, forKey: .task)
            try n.encodeIfPresent(m.task.queue, forKey: .queue)
            try n.encode(m.task.arguments, forKey: .arguments)
            try n.encodeIfPresent(m.task.maxAttempts, forKey: .maxAttempts)
            try n.encodeIfPresent(m.task.retry.map(RetrySpec.init), forKey: .retry)
            if let ms = m.task.timeoutMilliseconds { try n.encode(WorkflowDuration.text(milliseconds: ms), forKey: .timeout) }
            try n.encode(m.join, forKey: .join)
            try n.encodeIfPresent(m.maxParallel, forKey: .maxParallel)
        case .join(let policy):
            try c.encode(policy, forKey: .join)
        case .branch(let b):
            var n = c.nestedContainer(keyedBy: BranchKeys.self, forKey: .branch)
            try n.encode(b.condition, forKey: .if)
            try n.encode(b.then, forKey: .then)
            try n.encode(b.otherwise, forKey: .else)
        case .workflow(let w):
            var n = c.nestedContainer(keyedBy: WorkflowKeys.self, forKey: .workflow)
            try n.encode(w.name, forKey: .name)
            try n.encodeIfPresent(w.version, forKey: .version)
            try n.encode(w.input, forKey: .input)
        case .delay(let ms):
            try c.encode(WorkflowDuration.text(milliseconds: ms), forKey: .delay)
        case .signal(let spec):
            var n = c.nestedContainer(keyedBy: SignalKeys.self, forKey: .signal)
            try n.encode(spec.name, forKey: .name)
            if let ms = spec.timeoutMilliseconds { try n.encode(WorkflowDuration.text(milliseconds: ms), forKey: .timeout) }
            if spec.onTimeout != .fail { try n.encode(spec.onTimeout, forKey: .onTimeout) }
        }
        if let u = compensation {
            var n = c.nestedContainer(keyedBy: CompensateKeys.self, forKey: .compensate)
            try n.encode(u.name, forKey: .task)
            try n.encodeIfPresent(u.queue, forKey: .queue)
            try n.encode(u.arguments, forKey: .arguments)
            try n.encodeIfPresent(u.maxAttempts, forKey: .maxAttempts)
            try n.encodeIfPresent(u.retry.map(RetrySpec.init), forKey: .retry)
        }
    }
}

/// Refuses keys a block does not know, so that a misspelt key is an error,
/// not a setting silently ignored.
enum UnknownKeys {
    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    static func check<K: CodingKey & CaseIterable>(_ decoder: any Decoder, allowed: K.Type, in what: String) throws {
        try report(try decoder.container(keyedBy: AnyKey.self).allKeys, allowed, what, decoder.codingPath)
    }

    static func check<P: CodingKey, K: CodingKey & CaseIterable>(_ parent: KeyedDecodingContainer<P>, _ key: P, allowed: K.Type,
                                                                in what: String) throws {
        try report(try parent.nestedContainer(keyedBy: AnyKey.self, forKey: key).allKeys, allowed, what, parent.codingPath + [key])
    }

    private static func report<K: CodingKey & CaseIterable>(_ keys: [AnyKey], _: K.Type, _ what: String, _ path: [any CodingKey]) throws {
        let known = Set(K.allCases.map(\.stringValue))
        let unknown = keys.map(\.stringValue).filter { !known.contains($0) }.sorted()
        guard unknown.isEmpty else {
            throw DecodingError.dataCorrupted(.init(codingPath: path, debugDescription:
                "\(what): unknown key\(unknown.count == 1 ? "" : "s") \(unknown.joined(separator: ", ")) (known: \(K.allCases.map(\.stringValue).sorted().joined(separator: ", ")))"))
        }
    }
}

/// The retry block of a task step: `{ base: 1s, factor: 2, cap: 10m, jitter: 0.1 }`.
struct RetrySpec: Codable {
    var base: String?
    var factor: Double?
    var cap: String?
    var jitter: Double?
    var nonRetryable: [String]?

    init(_ policy: RetryPolicy) {
        base = WorkflowDuration.text(milliseconds: policy.baseMilliseconds)
        factor = policy.factor
        cap = WorkflowDuration.text(milliseconds: policy.capMilliseconds)
        jitter = policy.jitter
        nonRetryable = policy.nonRetryable.isEmpty ? nil : policy.nonRetryable.sorted()
    }

    var policy: RetryPolicy {
        get throws {
            let defaults = RetryPolicy()
            return RetryPolicy(
                baseMilliseconds: try base.map { try WorkflowDuration.milliseconds($0) } ?? defaults.baseMilliseconds,
                factor: factor ?? defaults.factor,
                capMilliseconds: try cap.map { try WorkflowDuration.milliseconds($0) } ?? defaults.capMilliseconds,
                jitter: jitter ?? defaults.jitter,
                nonRetryable: Set(nonRetryable ?? []))
        }
    }
}

extension JoinPolicy: Codable {
    enum Keys: String, CodingKey { case atLeast }

    public init(from decoder: any Decoder) throws {
        if let c = try? decoder.singleValueContainer(), let text = try? c.decode(String.self) {
            switch text {
            case "all": self = .all
            case "failFast", "fail_fast", "fail-fast": self = .failFast
            case "tolerate", "tolerateFailures": self = .tolerate
            default:
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                        debugDescription: "join policy '\(text)' is not all, failFast, tolerate or {atLeast: N}"))
            }
            return
        }
        let c = try decoder.container(keyedBy: Keys.self)
        self = .atLeast(try c.decode(Int.self, forKey: .atLeast))
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .all: var c = encoder.singleValueContainer(); try c.encode("all")
        case .failFast: var c = encoder.singleValueContainer(); try c.encode("failFast")
        case .tolerate: var c = encoder.singleValueContainer(); try c.encode("tolerate")
        case .atLeast(let n): var c = encoder.container(keyedBy: Keys.self); try c.encode(n, forKey: .atLeast)
        }
    }
}

extension KeyedDecodingContainer {
    /// A duration given as text (`30s`) or a number of seconds.
    func decodeDurationIfPresent(forKey key: Key) throws -> Int? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        if let seconds = try? decode(Double.self, forKey: key) {
            return try WorkflowDuration.milliseconds(String(seconds))
        }
        let text = try decode(String.self, forKey: key)
        do { return try WorkflowDuration.milliseconds(text) } catch {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: error.message)
        }
    }
}
