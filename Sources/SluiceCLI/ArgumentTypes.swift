import ArgumentParser
import Foundation
import SluiceCore
import SluiceWorkflow
import SluiceWorkerProcess

/// `--priority high|normal|low`.
enum PriorityArgument: String, ExpressibleByArgument, CaseIterable, Sendable {
    case high, normal, low

    var priority: TaskPriority { TaskPriority(rawValue: rawValue) ?? .normal }
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
