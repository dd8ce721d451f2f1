public import Foundation

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

        /// Completed, failed or cancelled.
        public var isFinal: Bool { self == .completed || self == .failed || self == .cancelled }
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

    /// Signals a run keeps for steps that have not started yet; the API refuses more.
    public static let keptSignalsLimit = 100
    /// How many signal ids a run remembers.
    public static let signalIDsKept = 256
    /// The largest signal data a run takes, as JSON (kept signals are part of the run's stored state).
    public static let maxSignalBytes = 65_536

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

    public init() {}
}

/// One element of a map step.
public struct ElementState: Sendable, Hashable, Codable {
    public var status: StepState.Status = .waiting
    public var attempts = 0
    public var output: JSONValue?
    public var error: String?

    public init() {}
}
