import Foundation

/// A bounded wait ran out.
public struct TimedOut: Error, CustomStringConvertible {
    public var what: String
    public var seconds: Double

    public init(what: String, seconds: Double) {
        self.what = what
        self.seconds = seconds
    }

    public var description: String { "timed out after \(seconds) s waiting for \(what)" }
}

/// How much longer than written the tests' bounded waits may take.
///
/// `SLUICE_TEST_TIME_SCALE` (default 1); `scripts/test`, and so CI, sets 3.
/// At the start of a full run the two cores are shared by a dozen private
/// broker nodes booting, worker and coordinator processes and the tests
/// themselves, and waits that take a second alone took over 60 s there.
/// The factor stretches the bound only: a wait still ends as soon as what
/// it awaits happens, and a hang still fails, with its message.
public enum TestTime {
    public static let scale: Double = {
        guard let text = ProcessInfo.processInfo.environment["SLUICE_TEST_TIME_SCALE"],
              let value = Double(text), value >= 1 else { return 1 }
        return value
    }()

    /// `seconds` stretched by ``scale``.
    public static func scaled(_ seconds: Double) -> Double { seconds * scale }

    /// When a wait of `seconds` (stretched by ``scale``) from now ends.
    public static func deadline(_ seconds: Double) -> ContinuousClock.Instant {
        .now + .seconds(scaled(seconds))
    }
}

/// Runs `body`, failing with a clear message if it takes longer than
/// `seconds` (stretched by ``TestTime/scale``).
public func within<T: Sendable>(_ seconds: Double, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let limit = TestTime.scaled(seconds)
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(limit))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw TimedOut(what: what, seconds: limit)
        }
        return value
    }
}
