#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Capped exponential backoff with jitter, for reconnecting.
///
/// The n-th delay is drawn uniformly from [base·factor^n·(1-jitter), base·factor^n],
/// capped at `maximum`. Jitter spreads out many clients reconnecting to a
/// broker that just came back.
public struct ReconnectBackoff: Sendable, Hashable {
    /// First delay.
    public var initial: Duration
    /// Largest delay.
    public var maximum: Duration
    /// Growth per attempt.
    public var factor: Double
    /// Fraction of each delay that is random, 0...1.
    public var jitter: Double

    private var attempt = 0

    /// 100 ms doubling up to 5 s, half of each delay random.
    public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(5), factor: Double = 2, jitter: Double = 0.5) {
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = min(max(jitter, 0), 1)
    }

    /// The delay before the next attempt; `unit` is a random number in 0..<1.
    public mutating func nextDelay(unit: Double = Double.random(in: 0..<1)) -> Duration {
        let initialSeconds = Self.seconds(initial)
        let cap = Self.seconds(maximum)
        let raw = min(initialSeconds * pow(factor, Double(attempt)), cap)
        attempt = min(attempt + 1, 64)
        let delay = raw * (1 - jitter * unit)
        return .nanoseconds(Int64(delay * 1e9))
    }

    /// Starts again from `initial` (after a successful connection).
    public mutating func reset() { attempt = 0 }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
