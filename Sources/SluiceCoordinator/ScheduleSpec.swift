import Foundation
import SluiceWorkflow

/// A cron schedule: when (a 5-field cron expression in a time zone) and what
/// (start a workflow, or enqueue a task).
///
/// Misfire policy, for fire times that pass while no coordinator runs:
/// `once` (the default) fires once as soon as a coordinator is back, however
/// many times were missed, then goes on from the next future time; `skip`
/// drops a fire more than a minute late. A fire is claimed in the same transaction
/// as the run or task it creates, so it never happens twice.
public struct ScheduleSpec: Sendable, Hashable, Codable {
    public enum Action: Sendable, Hashable, Codable {
        case workflow(name: String, version: Int?, input: JSONValue)
        case task(name: String, queue: String?, arguments: JSONValue)
    }

    public enum Misfire: String, Sendable, Hashable, Codable {
        case once, skip
    }

    public var id: String
    public var cron: String
    /// An IANA time zone name (`Europe/Paris`); UTC by default.
    public var timeZone: String
    public var action: Action
    public var misfire: Misfire

    public init(id: String, cron: String, timeZone: String = "UTC", action: Action, misfire: Misfire = .once) {
        self.id = id
        self.cron = cron
        self.timeZone = timeZone
        self.action = action
        self.misfire = misfire
    }

    /// Checks the id, the cron expression and the time zone.
    public func validate() throws {
        guard !id.isEmpty, id.count <= 100, id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else {
            throw WorkflowError(.invalidDefinition, "a schedule id must be 1-100 letters, digits, '.', '_' or '-'")
        }
        _ = try CronExpression(cron)
        guard TimeZone(identifier: timeZone) != nil else {
            throw WorkflowError(.invalidDefinition, "unknown time zone '\(timeZone)' (use an IANA name such as Europe/Paris)")
        }
    }

    /// The first fire time after `date`.
    public func nextFire(after date: Date) throws -> Date {
        let zone = TimeZone(identifier: timeZone) ?? TimeZone(identifier: "UTC")!
        guard let next = try CronExpression(cron).next(after: date, in: zone) else {
            throw WorkflowError(.invalidExpression, "cron '\(cron)' never fires")
        }
        return next
    }
}
