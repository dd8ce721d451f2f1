public import Foundation
import SluiceCore
public import SluiceWorkflow

/// A cron schedule: when (a 5-field cron expression in a time zone) and what
/// (start a workflow, or enqueue a task).
///
/// Misfire policy, for fire times that pass while no coordinator runs:
/// `once` (the default) fires once as soon as a coordinator is back, however
/// many times were missed, then goes on from the next future time; `skip`
/// drops a fire more than a minute late. A fire is claimed in the same transaction
/// as the run or task it creates, so it never happens twice.
public struct ScheduleSpec: Sendable, Hashable, Codable {
    /// What a schedule does when it fires: start a workflow run or enqueue a task.
    public enum Action: Sendable, Hashable, Codable {
        case workflow(name: String, version: Int?, input: JSONValue)
        case task(name: String, queue: String?, arguments: JSONValue)
    }

    /// What to do about fires missed while no coordinator was running: skip them, or fire once.
    public enum Misfire: String, Sendable, Hashable, Codable {
        case once, skip
    }

    public var id: String
    public var cron: String
    /// An IANA time zone name (`Europe/Paris`); UTC by default.
    public var timeZone: String
    public var action: Action
    public var misfire: Misfire
    /// A paused schedule does not fire; resumed, it fires next at its first
    /// time after the resume (times passed while paused are not fired).
    public var paused: Bool

    /// The fire time stores keep for a paused schedule: never due.
    public static let pausedFireTime = Date(timeIntervalSince1970: 253_402_300_799)

    public init(id: String, cron: String, timeZone: String = "UTC", action: Action, misfire: Misfire = .once, paused: Bool = false) {
        self.paused = paused
        self.id = id
        self.cron = cron
        self.timeZone = timeZone
        self.action = action
        self.misfire = misfire
    }

    enum CodingKeys: String, CodingKey { case id, cron, timeZone, action, misfire, paused }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        cron = try c.decode(String.self, forKey: .cron)
        timeZone = try c.decodeIfPresent(String.self, forKey: .timeZone) ?? "UTC"
        action = try c.decode(Action.self, forKey: .action)
        misfire = try c.decodeIfPresent(Misfire.self, forKey: .misfire) ?? .once
        paused = try c.decodeIfPresent(Bool.self, forKey: .paused) ?? false
    }

    /// When a schedule saved now fires next: never while it is paused.
    public func storedFireTime(after date: Date) throws -> Date {
        paused ? Self.pausedFireTime : try nextFire(after: date)
    }

    /// Checks the id, the cron expression, the time zone and the action.
    public func validate() throws {
        guard !id.isEmpty, id.count <= 100, id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else {
            throw WorkflowError(.invalidDefinition, "a schedule id must be 1-100 letters, digits, '.', '_' or '-'")
        }
        _ = try CronExpression(cron)
        switch action {
        case .workflow(let name, _, _):
            guard !name.isEmpty else { throw WorkflowError(.invalidDefinition, "a schedule needs a workflow name") }
        case .task(let name, let queue, _):
            // An AMQP short string: bytes, not characters.
            guard !name.isEmpty, name.utf8.count <= WireLimits.shortStringBytes else {
                throw WorkflowError(.invalidDefinition, "a task name must be 1-255 bytes (this one is \(name.utf8.count))")
            }
            if let queue, !Topology.isValidName(queue) {
                throw WorkflowError(.invalidDefinition, "queue '\(queue)' must be letters, digits, '-', '_' or '.'")
            }
        }
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
