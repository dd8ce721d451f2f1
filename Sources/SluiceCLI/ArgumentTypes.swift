import ArgumentParser
import Foundation
import Logging
import SluiceCore
import SluiceWorkflow

/// A duration on the command line, written as workflow files write them
/// (`500ms`, `30s`, `2m`, `1h30m`, `30d`, or a plain number of seconds),
/// from 0 to a year.
struct DurationArgument: ExpressibleByArgument, ExpressibleByStringLiteral, Sendable, Hashable, CustomStringConvertible {
    static let maxMilliseconds = 365 * 24 * 3_600_000

    let duration: Duration
    private let text: String

    init?(argument: String) {
        guard let ms = try? WorkflowDuration.milliseconds(argument), ms <= Self.maxMilliseconds else { return nil }
        duration = .milliseconds(Int64(ms))
        text = argument
    }

    /// A default written in the source; it must parse.
    init(stringLiteral value: String) {
        guard let parsed = DurationArgument(argument: value) else { preconditionFailure("not a duration: \(value)") }
        self = parsed
    }

    var description: String { text }
    var defaultValueDescription: String { text }
}

/// A size in bytes: a number, or one with a binary suffix (`64KiB`, `1MiB`,
/// `2GiB`; `k`, `m`, `g` mean the same).
struct ByteSize: ExpressibleByArgument, Sendable, Hashable, CustomStringConvertible {
    let bytes: Int

    init(bytes: Int) { self.bytes = bytes }

    init?(argument: String) {
        let text = argument.trimmingCharacters(in: .whitespaces)
        let units: [(String, Int)] = [("gib", 1 << 30), ("mib", 1 << 20), ("kib", 1 << 10), ("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)]
        let lower = text.lowercased()
        var multiplier = 1
        var number = Substring(lower)
        if let (suffix, factor) = units.first(where: { lower.hasSuffix($0.0) }) {
            multiplier = factor
            number = number.dropLast(suffix.count)
        }
        guard let value = Int(number), value >= 0 else { return nil }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { return nil }
        bytes = product
    }

    var description: String {
        for (suffix, factor) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] where bytes >= factor && bytes % factor == 0 {
            return "\(bytes / factor)\(suffix)"
        }
        return "\(bytes)"
    }

    var defaultValueDescription: String { description }
}

/// `--priority high|normal|low`.
enum PriorityArgument: String, ExpressibleByArgument, CaseIterable, Sendable {
    case high, normal, low

    var priority: TaskPriority { TaskPriority(rawValue: rawValue) ?? .normal }
}

/// `--log-level`: swift-log's levels by name.
enum LogLevel: String, ExpressibleByArgument, CaseIterable, Sendable {
    case trace, debug, info, notice, warning, error, critical

    var level: Logger.Level { Logger.Level(rawValue: rawValue) ?? .info }
}

/// How long to keep something: a duration of at least a second, or `forever`.
struct RetentionArgument: ExpressibleByArgument, ExpressibleByStringLiteral, Sendable, Hashable, CustomStringConvertible {
    /// nil: forever.
    let period: Duration?
    private let text: String

    init?(argument: String) {
        text = argument
        if argument == "forever" {
            period = nil
            return
        }
        guard let ms = try? WorkflowDuration.milliseconds(argument), ms >= 1000 else { return nil }
        period = .milliseconds(Int64(ms))
    }

    init(stringLiteral value: String) {
        guard let parsed = RetentionArgument(argument: value) else { preconditionFailure("not a retention: \(value)") }
        self = parsed
    }

    var description: String { text }
    var defaultValueDescription: String { text }
}

/// An interval of at least a second, or `off`.
struct IntervalOrOff: ExpressibleByArgument, ExpressibleByStringLiteral, Sendable, Hashable, CustomStringConvertible {
    /// nil: off.
    let duration: Duration?
    private let text: String

    init?(argument: String) {
        text = argument
        if argument == "off" {
            duration = nil
            return
        }
        guard let ms = try? WorkflowDuration.milliseconds(argument), ms >= 1000, ms <= DurationArgument.maxMilliseconds else { return nil }
        duration = .milliseconds(Int64(ms))
    }

    init(stringLiteral value: String) {
        guard let parsed = IntervalOrOff(argument: value) else { preconditionFailure("not an interval: \(value)") }
        self = parsed
    }

    var description: String { text }
    var defaultValueDescription: String { text }
}
