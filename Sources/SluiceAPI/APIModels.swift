public import Foundation
public import SluiceWorkflow

// The JSON bodies of the coordinator's HTTP API, one type each, shared by
// the server (CoordinatorAPI) and its clients (the `sluice` CLI), so that
// neither reads fields by string. Dates travel as ISO 8601 with
// milliseconds (APICoding).

/// `POST /v1/runs`.
public struct StartRunRequest: Codable, Sendable {
    public var workflow: String
    public var version: Int?
    public var input: JSONValue?
    public var idempotencyKey: String?
    /// W3C trace context every step task joins.
    public var traceparent: String?

    public init(workflow: String, version: Int? = nil, input: JSONValue? = nil, idempotencyKey: String? = nil,
                traceparent: String? = nil) {
        self.workflow = workflow
        self.version = version
        self.input = input
        self.idempotencyKey = idempotencyKey
        self.traceparent = traceparent
    }
}

/// `POST /v1/runs/{id}/pause|resume|cancel` (an empty body is allowed).
public struct RunCommandRequest: Codable, Sendable {
    /// Why (cancel only): kept as the run's error.
    public var reason: String?

    public init(reason: String? = nil) { self.reason = reason }
}

/// `POST /v1/runs/{id}/retry`.
public struct RetryStepRequest: Codable, Sendable {
    public var step: String
    /// Also run again the steps after it that succeeded.
    public var rerun: Bool?

    public init(step: String, rerun: Bool? = nil) {
        self.step = step
        self.rerun = rerun
    }
}

/// `POST /v1/runs/{id}/signals/{name}`: the signal's data (any JSON, null
/// when absent) and its id: a second signal with the same id applies once
/// (send one with each retry of a request); a new id is made when absent.
public struct SignalRequest: Codable, Sendable {
    public var data: JSONValue?
    public var id: String?

    public init(data: JSONValue? = nil, id: String? = nil) {
        self.data = data
        self.id = id
    }
}

/// The answer to a signal: where it went, and the run as it stands.
public struct SignalResponse: Codable, Sendable {
    public var runID: String
    public var name: String
    public var id: String
    /// The run's status after the signal (with 202, before it: the run's leader applies it shortly).
    public var status: RunState.Status
    /// True when no step waited for it yet and the run keeps it for one
    /// that starts later; false when a waiting step took it; absent when the
    /// run's leader applies it (202) or it was received before (same id).
    public var kept: Bool?

    public init(runID: String, name: String, id: String, status: RunState.Status, kept: Bool?) {
        self.runID = runID
        self.name = name
        self.id = id
        self.status = status
        self.kept = kept
    }
}

/// `POST /v1/tasks`: a standalone task.
public struct EnqueueTaskRequest: Codable, Sendable {
    public var name: String
    public var queue: String?
    public var arguments: JSONValue?
    public var delaySeconds: Double?
    public var maxAttempts: Int?
    public var idempotencyKey: String?
    /// Whether the coordinator keeps the task's status (`GET /v1/tasks/{id}`).
    public var track: Bool?
    /// At most one task with this key at a time (see `UniqueKey`).
    public var unique: UniqueTaskKey?
    /// Tasks with the same order key run one at a time, in enqueue order.
    public var orderKey: String?

    public init(name: String, queue: String? = nil, arguments: JSONValue? = nil, delaySeconds: Double? = nil,
                maxAttempts: Int? = nil, idempotencyKey: String? = nil, track: Bool? = nil, unique: UniqueTaskKey? = nil,
                orderKey: String? = nil) {
        self.orderKey = orderKey
        self.track = track
        self.unique = unique
        self.name = name
        self.queue = queue
        self.arguments = arguments
        self.delaySeconds = delaySeconds
        self.maxAttempts = maxAttempts
        self.idempotencyKey = idempotencyKey
    }
}

/// `POST /v1/tasks/{id}/revoke` (the body may be empty).
public struct RevokeTaskRequest: Codable, Sendable {
    /// Also cancel the task if it runs now.
    public var terminate: Bool?
    /// Why, for the dead letter's message.
    public var reason: String?

    public init(terminate: Bool? = nil, reason: String? = nil) {
        self.terminate = terminate
        self.reason = reason
    }
}

/// The answer to `POST /v1/tasks/{id}/revoke`: the revocation is on the
/// broker; workers apply it as they read it.
public struct RevokedTask: Codable, Sendable {
    public var id: String
    public var revoked = true
    public var terminate: Bool

    public init(id: String, revoked: Bool = true, terminate: Bool) {
        self.id = id
        self.revoked = revoked
        self.terminate = terminate
    }
}

/// The answer to `POST /v1/tasks`.
public struct EnqueuedTask: Codable, Sendable {
    public var id: String
    /// False when a task with the same unique key held its lock: `id` is
    /// that task's, and nothing was enqueued (absent without a unique key).
    public var enqueued: Bool?

    public init(id: String, enqueued: Bool? = nil) {
        self.id = id
        self.enqueued = enqueued
    }
}

/// `unique` in `POST /v1/tasks`.
public struct UniqueTaskKey: Codable, Sendable {
    public var key: String
    /// The longest the lock is held, in seconds (1 to 24 days).
    public var forSeconds: Double
    /// `until-finished` (default) or `window`.
    public var policy: String?

    public init(key: String, forSeconds: Double, policy: String? = nil) {
        self.key = key
        self.forSeconds = forSeconds
        self.policy = policy
    }
}

/// The answer to `POST /v1/workflows`: what was registered.
public struct RegisteredWorkflow: Codable, Sendable {
    public var name: String
    public var version: Int

    public init(name: String, version: Int) {
        self.name = name
        self.version = version
    }
}

/// The answer to `DELETE /v1/workflows/{name}/{version}`.
public struct DeletedWorkflow: Codable, Sendable {
    public var deleted: String
    public var version: Int

    public init(deleted: String, version: Int) {
        self.deleted = deleted
        self.version = version
    }
}

/// The answer to `DELETE /v1/schedules/{id}`.
public struct RemovedSchedule: Codable, Sendable {
    public var removed: String

    public init(removed: String) {
        self.removed = removed
    }
}

/// A schedule and when it fires next (`GET /v1/schedules`, `POST /v1/schedules`).
public struct ScheduleView: Codable, Sendable {
    public var spec: ScheduleSpec
    /// Nil while the schedule is paused.
    public var nextFireAt: Date?

    /// `nextFireAt`: as stored; left out when the schedule is paused.
    public init(spec: ScheduleSpec, nextFireAt: Date) {
        self.spec = spec
        self.nextFireAt = spec.paused ? nil : nextFireAt
    }
}

/// A page of definition summaries (`GET /v1/workflows`).
public struct DefinitionPage: Codable, Sendable {
    public var workflows: [DefinitionSummary]
    public var nextCursor: String?

    public init(workflows: [DefinitionSummary], nextCursor: String? = nil) {
        self.workflows = workflows
        self.nextCursor = nextCursor
    }
}

/// `GET /healthz`. `active` is "true" or "false" (a string, as load
/// balancers' simple matchers expect).
public struct HealthStatus: Codable, Sendable {
    public var status: String
    /// "true" while this coordinator leads (one partition or more).
    public var active: String
    /// The partitions it leads, of `partitionCount` (the store's; 0 until it is known).
    public var partitions: [Int]
    public var partitionCount: Int

    public init(status: String, active: String, partitions: [Int], partitionCount: Int) {
        self.status = status
        self.active = active
        self.partitions = partitions
        self.partitionCount = partitionCount
    }
}

/// `GET /v1/stats`: counts only, no run state.
public struct CoordinatorStats: Codable, Sendable {
    /// Runs by status name.
    public var runs: [String: Int]
    /// Step tasks waiting in the outbox.
    public var outboxUnsent: Int
    /// Whether this coordinator holds the lease.
    public var active: Bool

    public init(runs: [String: Int], outboxUnsent: Int, active: Bool) {
        self.runs = runs
        self.outboxUnsent = outboxUnsent
        self.active = active
    }
}

/// Every error: `{"error": {"code": "...", "message": "..."}}`.
public struct APIErrorBody: Codable, Sendable {
    public struct Detail: Codable, Sendable {
        /// Stable, for programs: see ``APIError/Code``.
        public var code: String
        public var message: String

        public init(code: String, message: String) {
            self.code = code
            self.message = message
        }
    }

    public var error: Detail

    public init(error: Detail) {
        self.error = error
    }
}

/// The one JSON encoding of the API, for both ends.
public enum APICoding {
    /// Sorted keys; dates as ISO 8601 with milliseconds (step timings are often under a second).
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(formatDate(date))
        }
        return encoder
    }

    /// Reads what ``encoder()`` writes (and ISO 8601 without fractions).
    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = parseDate(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text)' is not an ISO 8601 time")
            }
            return date
        }
        return decoder
    }

    /// Made once: a run's state holds a time per step, and a formatter per
    /// time was an allocation each.
    private static let withMilliseconds = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    private static let wholeSeconds = Date.ISO8601FormatStyle()

    /// A time as the API writes it.
    public static func formatDate(_ date: Date) -> String {
        withMilliseconds.format(date)
    }

    /// A time as the API writes it, or ISO 8601 without fractions.
    public static func parseDate(_ text: String) -> Date? {
        (try? withMilliseconds.parse(text)) ?? (try? wholeSeconds.parse(text))
    }
}
