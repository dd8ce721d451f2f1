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
