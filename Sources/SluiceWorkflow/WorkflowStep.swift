public import SluiceCore

/// One step of a workflow: what it does, and which steps must settle first.
public struct WorkflowStep: Sendable, Hashable {
    /// Unique within the definition: letters, digits, `_` and `-`.
    public var id: String
    /// Steps that must settle before this one starts (its dependencies).
    public var after: [String]
    public var kind: Kind
    /// What undoes this step's work (task and map steps): run, in reverse
    /// completion order, when the run fails or is cancelled after the step
    /// (or, for a map, some of its elements) succeeded. Its arguments may use
    /// `${output}` (the step's or the element's output) and, in a map,
    /// `${item}` and `${index}`.
    public var compensation: TaskSpec?

    /// What the step does: run a task, map a task over a list, start a sub-workflow, wait, branch or join.
    public enum Kind: Sendable, Hashable {
        /// Runs one task.
        case task(TaskSpec)
        /// Runs one task per element of an array; settles by its join policy.
        case map(MapSpec)
        /// Waits for its dependencies and settles by the policy; its output is
        /// their outputs, in the order of `after`.
        case join(JoinPolicy)
        /// Decides which of two sets of steps run.
        case branch(BranchSpec)
        /// Runs another workflow; its output is the child run's output.
        case workflow(SubWorkflowSpec)
        /// Waits; its output is null.
        case delay(milliseconds: Int)
        /// Waits for a signal sent to the run from outside (a webhook, a
        /// person's approval: `POST /v1/runs/{id}/signals/{name}`); its output
        /// is the signal's data. A signal that came before the step started
        /// is kept for it.
        case signal(SignalSpec)
    }

    public init(id: String, after: [String] = [], _ kind: Kind, compensation: TaskSpec? = nil) {
        self.id = id
        self.after = after
        self.kind = kind
        self.compensation = compensation
    }

    /// This step with a compensating task (see ``compensation``).
    public func compensated(by task: String, queue: String? = nil, arguments: JSONValue = [:], maxAttempts: Int? = nil,
                            retry: RetryPolicy? = nil) -> WorkflowStep {
        var step = self
        step.compensation = TaskSpec(name: task, queue: queue, arguments: ArgumentsTemplate(arguments), maxAttempts: maxAttempts,
                                     retry: retry)
        return step
    }
}

/// The task a step (or each element of a map step) runs.
public struct TaskSpec: Sendable, Hashable {
    /// The task name a worker has a handler for.
    public var name: String
    /// The queue; nil for the coordinator's default queue.
    public var queue: String?
    public var arguments: ArgumentsTemplate
    /// Runs allowed (the worker retries with backoff up to this).
    public var maxAttempts: Int?
    /// Backoff for the worker's retries (its `maxAttempts` is used when the step gives none).
    public var retry: RetryPolicy?
    /// The step fails if it has not succeeded this long after it was published.
    public var timeoutMilliseconds: Int?

    public init(name: String, queue: String? = nil, arguments: ArgumentsTemplate = ArgumentsTemplate(.object([:])),
                maxAttempts: Int? = nil, retry: RetryPolicy? = nil, timeoutMilliseconds: Int? = nil) {
        self.name = name
        self.queue = queue
        self.arguments = arguments
        self.maxAttempts = maxAttempts
        self.retry = retry
        self.timeoutMilliseconds = timeoutMilliseconds
    }
}

/// A fan-out: one task per element of an array.
public struct MapSpec: Sendable, Hashable {
    /// Where the array is: `input.items` or `steps.<id>.output...`.
    public var over: ValuePath
    /// The task for each element; its arguments may use `${item}` and `${index}`.
    public var task: TaskSpec
    /// When the map step as a whole succeeds or fails.
    public var join: JoinPolicy
    /// At most this many elements' tasks published and unsettled at once; nil for all.
    public var maxParallel: Int?

    public init(over: ValuePath, task: TaskSpec, join: JoinPolicy = .all, maxParallel: Int? = nil) {
        self.over = over
        self.task = task
        self.join = join
        self.maxParallel = maxParallel
    }
}

/// How a fan-in settles from the outcomes of what it waits for.
public enum JoinPolicy: Sendable, Hashable {
    /// Waits for every one; succeeds if all succeeded, else fails with the first failure.
    case all
    /// Fails as soon as one fails (the results of the rest are ignored); succeeds when all succeeded.
    case failFast
    /// Waits for every one and succeeds whatever happened; failed ones give null outputs.
    case tolerate
    /// Succeeds as soon as `n` have succeeded; fails as soon as that can no longer happen.
    case atLeast(Int)

    /// The decision once `succeeded` and `failed` of `total` are known: nil while undecided.
    public func decide(succeeded: Int, failed: Int, total: Int) -> Bool? {
        let settled = succeeded + failed
        switch self {
        case .all:
            return settled == total ? failed == 0 : nil
        case .failFast:
            if failed > 0 { return false }
            return succeeded == total ? true : nil
        case .tolerate:
            return settled == total ? true : nil
        case .atLeast(let n):
            if succeeded >= n { return true }
            if succeeded + (total - settled) < n { return false }
            return nil
        }
    }
}

/// A conditional branch: `then` steps run if the condition holds, `else` steps if not.
/// The steps of the side not taken are skipped, and so is every step (other
/// than a join) that depends on a skipped step.
public struct BranchSpec: Sendable, Hashable {
    public var condition: Condition
    public var then: [String]
    public var otherwise: [String]

    public init(if condition: Condition, then: [String], else otherwise: [String] = []) {
        self.condition = condition
        self.then = then
        self.otherwise = otherwise
    }
}

/// A wait for a named signal.
public struct SignalSpec: Sendable, Hashable {
    /// The signal's name: 1 to 128 of letters, digits, `_`, `-` and `.`.
    public var name: String
    /// How long to wait once the step started; nil waits as long as the run lives.
    public var timeoutMilliseconds: Int?
    /// What a timeout does.
    public var onTimeout: SignalTimeout

    public init(name: String, timeoutMilliseconds: Int? = nil, onTimeout: SignalTimeout = .fail) {
        self.name = name
        self.timeoutMilliseconds = timeoutMilliseconds
        self.onTimeout = onTimeout
    }
}

/// What happens when a signal step's timeout comes first.
public enum SignalTimeout: String, Sendable, Hashable, Codable {
    /// The step fails (and the run with it, unless a join absorbs it).
    case fail
    /// The step succeeds with output `{"timedOut": true}`: a branch after it
    /// can take another way (`if: "steps.<id>.output.timedOut"`).
    case `continue`
}

/// A child workflow run.
public struct SubWorkflowSpec: Sendable, Hashable {
    public var name: String
    /// nil for the newest registered version.
    public var version: Int?
    public var input: ArgumentsTemplate

    public init(name: String, version: Int? = nil, input: ArgumentsTemplate = ArgumentsTemplate(.object([:]))) {
        self.name = name
        self.version = version
        self.input = input
    }
}
