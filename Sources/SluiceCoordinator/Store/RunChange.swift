import Foundation
public import SluiceWorkflow

/// One run's state change, written atomically with its consequences.
public struct RunChange: Sendable {
    /// The run's new state (inserted if `isNew`, else replacing the stored one).
    public var run: RunState
    public var isNew: Bool
    /// For a new run: the key that makes starting it idempotent.
    public var idempotencyKey: String?
    /// Tasks to publish after the commit (the outbox).
    public var publish: [StepTask]
    /// Timers to add (or move).
    public var addTimers: [TimerEntry]
    /// Timers to remove (fired or no longer needed).
    public var removeTimers: [String]
    /// Map elements to write as rows (``RunState/storedJSON(elementsAsRows:)``
    /// leaves them out of the run's document).
    public var elements: ElementChanges
    /// What the change does to the run's concurrency slot (runs of workflows with a `concurrency` limit).
    public var slot: SlotChange?

    /// A run's place under its workflow's concurrency limit, kept by the
    /// store in the same transaction as the run: the store starts waiting
    /// runs (with a `start` message through the outbox) as slots free up.
    public enum SlotChange: Sendable, Hashable {
        /// A new run: it waits `pending` in line for a slot of its key.
        case wait
        /// A finished run made active again (a step retried by hand): it
        /// holds a slot at once, past the limit if need be.
        case hold
        /// The run finished: its slot, or its place in line, is given back.
        case release
    }

    public init(run: RunState, isNew: Bool = false, idempotencyKey: String? = nil, publish: [StepTask] = [],
                addTimers: [TimerEntry] = [], removeTimers: [String] = [], elements: ElementChanges = ElementChanges()) {
        self.run = run
        self.isNew = isNew
        self.idempotencyKey = idempotencyKey
        self.publish = publish
        self.addTimers = addTimers
        self.removeTimers = removeTimers
        self.elements = elements
    }
}
