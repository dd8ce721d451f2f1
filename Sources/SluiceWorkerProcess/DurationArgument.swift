public import ArgumentParser
import SluiceCore

/// A duration on the command line, written as workflow files write them
/// (`500ms`, `30s`, `2m`, `1h30m`, `30d`, or a plain number of seconds),
/// from 0 to a year.
public struct DurationArgument: ExpressibleByArgument, ExpressibleByStringLiteral, Sendable, Hashable, CustomStringConvertible {
    public static let maxMilliseconds = 365 * 24 * 3_600_000

    public let duration: Duration
    private let text: String

    public init?(argument: String) {
        guard let ms = try? DurationText.milliseconds(argument), ms <= Self.maxMilliseconds else { return nil }
        duration = .milliseconds(Int64(ms))
        text = argument
    }

    /// A default written in the source; it must parse.
    public init(stringLiteral value: String) {
        guard let parsed = DurationArgument(argument: value) else { preconditionFailure("not a duration: \(value)") }
        self = parsed
    }

    public var description: String { text }
    public var defaultValueDescription: String { text }

    /// Whole milliseconds.
    public var milliseconds: Int {
        Int(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
    }
}
