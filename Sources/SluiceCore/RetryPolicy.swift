import SluiceWire

/// When and how often a failing task runs again.
///
/// Attempt n (n ≥ 1) that fails waits `base × factor^(n-1)`, at most `cap`,
/// with up to `jitter` of it taken off at random, before attempt n+1 — unless
/// `maxAttempts` is reached or the error's kind is in `nonRetryable`, in which
/// case the task goes to its dead queue.
public struct RetryPolicy: Sendable, Hashable, Codable {
    /// Runs allowed in all (the first included).
    public var maxAttempts: Int
    /// Delay after the first failure, in milliseconds.
    public var baseMilliseconds: Int
    /// Growth per attempt.
    public var factor: Double
    /// Longest delay, in milliseconds.
    public var capMilliseconds: Int
    /// Fraction of each delay that is random, 0...1.
    public var jitter: Double
    /// Error kinds (``TaskFailure/kind``, or a Swift error's type name) that
    /// are never retried.
    public var nonRetryable: Set<String>

    /// 5 attempts; 1 s doubling to 10 min; 20 % jitter.
    public init(maxAttempts: Int = 5, baseMilliseconds: Int = 1_000, factor: Double = 2, capMilliseconds: Int = 600_000,
                jitter: Double = 0.2, nonRetryable: Set<String> = []) {
        self.maxAttempts = max(1, maxAttempts)
        // Delays beyond 30 days are clamped: values from headers must not overflow.
        self.baseMilliseconds = min(max(0, baseMilliseconds), Self.longestDelay)
        self.factor = factor.isFinite ? min(max(1, factor), 1000) : 2
        self.capMilliseconds = min(max(self.baseMilliseconds, capMilliseconds), Self.longestDelay)
        self.jitter = jitter.isFinite ? min(max(jitter, 0), 1) : 0
        self.nonRetryable = nonRetryable
    }

    /// The longest delay a policy allows: 30 days.
    public static let longestDelay = 30 * 24 * 3_600_000

    /// The wait before the attempt after `failedAttempt`, in milliseconds; `unit` is random in 0..<1.
    public func delayMilliseconds(afterAttempt failedAttempt: Int, unit: Double = Double.random(in: 0..<1)) -> Int {
        var raw = Double(baseMilliseconds)
        var n = 1
        while n < min(failedAttempt, 64) && raw < Double(capMilliseconds) {
            raw *= factor
            n += 1
        }
        raw = min(raw, Double(capMilliseconds))
        return Int((raw * (1 - jitter * unit)).rounded())
    }

    /// What to do after attempt `attempt` failed with an error of `kind`.
    public func decision(afterAttempt attempt: Int, errorKind: String, maxAttemptsOverride: Int? = nil,
                         unit: Double = Double.random(in: 0..<1)) -> RetryDecision {
        if nonRetryable.contains(errorKind) { return .dead(.nonRetryable) }
        if attempt >= (maxAttemptsOverride ?? maxAttempts) { return .dead(.maxAttempts) }
        return .retry(afterMilliseconds: delayMilliseconds(afterAttempt: attempt, unit: unit))
    }

    /// The header form (`sluice-retry`): backoff settings only.
    var fieldTable: FieldTable {
        [
            "base-ms": .int64(Int64(baseMilliseconds)), "factor": .double(factor),
            "max-ms": .int64(Int64(capMilliseconds)), "jitter": .double(jitter),
        ]
    }

    init?(fieldTable t: FieldTable) {
        func double(_ v: FieldValue?) -> Double? {
            switch v {
            case .double(let d): d
            case .float(let f): Double(f)
            case .some(let other): other.intValue.map(Double.init)
            case .none: nil
            }
        }
        guard let base = t["base-ms"]?.intValue, base >= 0 else { return nil }
        self.init(baseMilliseconds: base, factor: double(t["factor"]) ?? 2,
                  capMilliseconds: t["max-ms"]?.intValue ?? 600_000, jitter: double(t["jitter"]) ?? 0.2)
    }
}

/// The outcome of a failed attempt.
public enum RetryDecision: Sendable, Hashable {
    case retry(afterMilliseconds: Int)
    case dead(DeadReason)
}

/// An error a handler throws to control retrying.
public struct TaskFailure: Error, Sendable, Hashable, CustomStringConvertible {
    /// A short, stable kind (matched against ``RetryPolicy/nonRetryable``).
    public var kind: String
    /// What went wrong.
    public var message: String
    /// Never retry this failure, whatever the policy says.
    public var retryable: Bool

    public init(kind: String = "task_failed", _ message: String, retryable: Bool = true) {
        self.kind = kind
        self.message = message
        self.retryable = retryable
    }

    /// A failure that goes straight to the dead queue.
    public static func permanent(_ message: String, kind: String = "permanent") -> TaskFailure {
        TaskFailure(kind: kind, message, retryable: false)
    }

    public var description: String { "\(kind): \(message)" }
}
