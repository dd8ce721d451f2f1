public import Foundation
import SluiceCore

/// Everything the coordinator knows about one workflow run; what it stores.
public struct RunState: Sendable, Hashable, Codable {
    /// Where a run is; completed, failed and cancelled are final.
    public enum Status: String, Sendable, Hashable, Codable, CaseIterable {
        /// Created, not yet started.
        case pending
        case running
        /// No new steps are published; running ones finish.
        case paused
        case completed
        case failed
        case cancelled
        /// Failed or cancelled, and undoing its completed steps' work (their
        /// compensations run, last completed first).
        case compensating
        /// Failed or cancelled, and every compensation succeeded.
        case compensated
        /// Failed or cancelled, and a compensation failed for good: the rest did not run.
        case compensationFailed = "compensation_failed"

        /// Completed, failed, cancelled, compensated or compensation_failed.
        public var isFinal: Bool {
            switch self {
            case .completed, .failed, .cancelled, .compensated, .compensationFailed: return true
            case .pending, .running, .paused, .compensating: return false
            }
        }
    }

    public var runID: String
    public var workflow: String
    public var version: Int
    public var input: JSONValue
    public var status: Status
    /// Every step, by id.
    public var steps: [String: StepState]
    /// When completed: the run's output.
    public var output: JSONValue?
    /// When failed or cancelled: why.
    public var error: String?
    /// When failed because of a step: which.
    public var failedStep: String?
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    /// The parent run's step, when this run is a sub-workflow.
    public var parent: ParentLink?
    /// The W3C `traceparent` of the request that started the run (or of its
    /// parent run); every step task carries this trace.
    public var traceparent: String?
    /// The ids of the last commands this run received as messages from
    /// another coordinator (oldest first, at most ``appliedMessagesKept``),
    /// so that one delivered twice applies once.
    public var appliedMessages: [String]?

    /// Signals sent to the run that no signal step has taken yet (oldest
    /// first, at most ``keptSignalsLimit``): a step that starts waiting for
    /// one of their names takes the oldest.
    public var signals: [ReceivedSignal]?
    /// The ids of the last signals the run received (at most
    /// ``signalIDsKept``), so that one sent twice applies once.
    public var signalIDs: [String]?

    /// Set when its workflow limits concurrent runs: the run waits `pending`
    /// until the store gives it a slot of this key.
    public var slot: RunSlot?

    /// Steps with a compensation whose work completed (a task step that
    /// succeeded, a map step with a succeeded element), in the order they
    /// completed (a map moves to the end at each element).
    public var completedWork: [String]?
    /// Once the run failed or was cancelled with completed work to undo.
    public var compensation: Compensation?
    /// The commands that changed the run (pause, resume, cancel, retry,
    /// signal), oldest first, the last ``historyKept``.
    public var history: [CommandRecord]?

    /// A run's compensation: why, and how far.
    public struct Compensation: Sendable, Hashable, Codable {
        /// What ended the run: `failed` or `cancelled`.
        public var cause: Status
        /// The steps to compensate, in the order they run (reverse completion
        /// order); nil while compensable steps are still running (their
        /// outcome decides whether they need undoing).
        public var order: [String]?
        /// How many of `order` are done.
        public var done: Int
        /// Why compensation failed.
        public var error: String?

        public init(cause: Status, order: [String]? = nil, done: Int = 0, error: String? = nil) {
            self.cause = cause
            self.order = order
            self.done = done
            self.error = error
        }
    }

    /// Signals a run keeps for steps that have not started yet; the API refuses more.
    public static let keptSignalsLimit = 100
    /// How many signal ids a run remembers.
    public static let signalIDsKept = 256
    /// The largest signal data a run takes, as JSON (kept signals are part of the run's stored state).
    public static let maxSignalBytes = 65_536

    /// How many commands a run's history keeps.
    public static let historyKept = 50

    /// A command that changed a run.
    public struct CommandRecord: Sendable, Hashable, Codable {
        /// `pause`, `resume`, `cancel`, `retry` or `signal`.
        public var command: String
        public var at: Date
        /// The cancel's reason, the retried step, the signal's name and id.
        public var detail: String?

        public init(command: String, at: Date, detail: String? = nil) {
            self.command = command
            self.at = at
            self.detail = detail
        }
    }

    /// Appends a command to the history, keeping the last ``historyKept``.
    mutating func record(_ command: CommandRecord) {
        var list = history ?? []
        list.append(command)
        if list.count > Self.historyKept { list.removeFirst(list.count - Self.historyKept) }
        history = list
    }

    /// A signal kept for a step that has not started waiting yet.
    public struct ReceivedSignal: Sendable, Hashable, Codable {
        public var name: String
        public var id: String
        public var data: JSONValue
        public var at: Date

        public init(name: String, id: String, data: JSONValue, at: Date) {
            self.name = name
            self.id = id
            self.data = data
            self.at = at
        }
    }

    /// Remembers a signal id; false if the run had received it already.
    mutating func recordSignal(_ id: String) -> Bool {
        Self.remember(id, in: &signalIDs, keeping: Self.signalIDsKept)
    }

    /// Whether the run received the signal `id`: remembered, or kept (a kept
    /// one may outlive its id among the remembered).
    public func hasSignal(id: String) -> Bool {
        signalIDs?.contains(id) == true || signals?.contains { $0.id == id } == true
    }

    /// How many message ids a run remembers: far more than can be in flight
    /// for one run at once (commands are sent by people and scripts).
    public static let appliedMessagesKept = 32

    /// Remembers a message id; false if the run had applied it already.
    public mutating func recordMessage(_ id: String) -> Bool {
        Self.remember(id, in: &appliedMessages, keeping: Self.appliedMessagesKept)
    }

    /// Appends `id` to a list of the last `count` ids, oldest first; false if it is there already.
    private static func remember(_ id: String, in list: inout [String]?, keeping count: Int) -> Bool {
        var ids = list ?? []
        guard !ids.contains(id) else { return false }
        ids.append(id)
        if ids.count > count { ids.removeFirst(ids.count - count) }
        list = ids
        return true
    }

    /// For a sub-workflow's run: the run that started it and under which key.
    public struct ParentLink: Sendable, Hashable, Codable {
        public var runID: String
        public var childKey: String
        public init(runID: String, childKey: String) {
            self.runID = runID
            self.childKey = childKey
        }
    }

    public init(runID: String, workflow: String, version: Int, input: JSONValue, steps: [String: StepState],
                createdAt: Date, parent: ParentLink? = nil, traceparent: String? = nil) {
        self.runID = runID
        self.workflow = workflow
        self.version = version
        self.input = input
        self.status = .pending
        self.steps = steps
        self.createdAt = createdAt
        self.parent = parent
        self.traceparent = traceparent
    }
}

extension RunState {
    /// The id of the run a sub-workflow step starts: from the step's child
    /// key (`<parent run>/<step>/<generation>`), so a replayed start finds it.
    public static func childRunID(_ childKey: String) -> String {
        WireLimits.boundedID(childKey.replacingOccurrences(of: "/", with: "."), limit: 120)
    }

    /// The id of the run step `step` of this run started (sub-workflow steps), for its latest generation.
    public func childRunID(step: String) -> String? {
        guard let generation = steps[step]?.generation else { return nil }
        return Self.childRunID("\(runID)/\(step)/\(generation)")
    }
}

/// One step of a run.
public struct StepState: Sendable, Hashable, Codable {
    /// Where a step is; succeeded, failed and skipped are settled.
    public enum Status: String, Sendable, Hashable, Codable, CaseIterable {
        /// Its dependencies have not all settled.
        case waiting
        /// Could start, but the run is paused.
        case ready
        case running
        case succeeded
        case failed
        /// Will not run: a branch took the other side, or it depends on a skipped step.
        case skipped

        /// Succeeded, failed or skipped.
        public var isSettled: Bool { self == .succeeded || self == .failed || self == .skipped }
    }

    public var status: Status = .waiting
    /// Bumped when the step is retried by hand; events of older generations are stale.
    public var generation = 0
    /// Runs the worker reported for the latest attempt (task steps).
    public var attempts = 0
    public var output: JSONValue?
    public var error: String?
    public var startedAt: Date?
    public var finishedAt: Date?
    /// Map steps: one entry per element.
    public var elements: [ElementState]?
    /// Task steps: the running attempt's last progress report (0...1) and
    /// message (``SluiceCore/TaskEvent/progress``); kept once it settles.
    public var progress: Double?
    public var progressMessage: String?
    /// Once its compensation started.
    public var compensation: StepCompensation?

    public init() {}
}

/// A step's compensation: one task, or one per succeeded element of a map.
public struct StepCompensation: Sendable, Hashable, Codable {
    /// running, succeeded or failed.
    public var status: StepState.Status
    /// Runs the worker reported (task steps).
    public var attempts: Int
    public var error: String?
    public var startedAt: Date?
    public var finishedAt: Date?
    /// Map steps: the elements whose compensation runs now.
    public var running: [Int]?
    /// Map steps: elements at or below this index are not looked at yet
    /// (elements are compensated from the last one down).
    public var next: Int?
    /// Map steps: elements compensated.
    public var done: Int?

    public init(status: StepState.Status, attempts: Int = 0, startedAt: Date? = nil) {
        self.status = status
        self.attempts = attempts
        self.startedAt = startedAt
    }
}

/// One element of a map step.
public struct ElementState: Sendable, Hashable, Codable {
    public var status: StepState.Status = .waiting
    public var attempts = 0
    public var output: JSONValue?
    public var error: String?

    public init() {}
}
