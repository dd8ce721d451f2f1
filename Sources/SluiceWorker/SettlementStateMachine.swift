#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SluiceCore
import SluiceWire

/// What becomes of one delivery, decided without I/O: which messages must be
/// published, in which order, and when to acknowledge.
///
/// The worker feeds it what happened (the delivery, the admission verdict,
/// the handler's outcome, a publish that broke a wire limit) and executes the
/// ``Action`` it returns, the way postgres-nio's connection state machine is
/// driven. The rule it keeps: a delivery is acknowledged only after the
/// message that carries its outcome (the postponed or retry copy, the
/// `succeeded` event, the reply to a producer waiting for the result, the dead
/// copy) has been confirmed; events that only report (`retrying`, `dead`,
/// the reply about a dead task) are sent on a best-effort basis. A publish that
/// fails for any other reason than a wire limit is the caller's to handle:
/// it leaves the delivery unacknowledged, so the broker delivers it again.
struct SettlementStateMachine: Sendable {
    /// What the decisions depend on: the worker's configuration, pure parts.
    struct Settings: Sendable {
        var topology: Topology
        var workerID: String
        var maxBodyBytes: Int
        var maxResultBytes: Int
        var retryPolicy: RetryPolicy
        var eventSigner: EventSigner?
        var publishStartedEvents: Bool
    }

    /// Whether anybody wants an event with this routing key (see
    /// ``EventDemand``). Asked before an event is built: one nobody wants is
    /// neither written nor published, and a plain task's success is then
    /// acknowledged at once. Every event is wanted unless the worker says otherwise.
    var eventWanted: @Sendable (_ routingKey: String) -> Bool = { _ in true }

    /// Retry a failed attempt here, after its backoff, holding the delivery
    /// (an ordered partition's: a copy through the delay ladder would lose
    /// the task's place before its key's later tasks), instead of
    /// publishing a retry copy.
    var retriesInPlace = false

    /// What the worker does next.
    enum Action: Sendable {
        /// Write a log line, then call ``logged()``.
        case log(Warning)
        /// Ask the admission hook about this task, then call ``admitted(_:)``.
        case admit(TaskEnvelope)
        /// Run the task's handler (`started`: an event to send without
        /// waiting), then call ``handlerFinished(_:milliseconds:now:jitter:)``,
        /// or ``noHandler(registered:)`` when no handler has the task's name.
        case run(TaskEnvelope, waitedMilliseconds: Double?, started: OutboundMessage?)
        /// Publish and wait for the broker's confirm, then call
        /// ``published()``; if it breaks a wire limit, ``publishRefused(_:)``.
        case publish(OutboundMessage)
        /// Publish a report; whatever happens, then call ``eventSent()``.
        case publishEvent(OutboundMessage)
        /// Wait this long holding the delivery, then call ``retryDue(now:)``
        /// (``retriesInPlace``); shutdown meanwhile hands the delivery back.
        case retryInPlace(afterMilliseconds: Int)
        /// Acknowledge the delivery: its outcome is safe. The end.
        case ack(Outcome)
        /// Give up without acknowledging (the broker delivers it again). The end.
        case fail(any Error)
    }

    /// How a delivery ended, for counters and logs.
    enum Outcome: Equatable, Sendable {
        /// Sent on: early from the delay ladder, or to the isolation queue.
        case forwarded
        case succeeded(task: String)
        case retried(task: String)
        case dead(task: String, id: String, reason: DeadReason, message: String)

        /// The task's last word: it succeeded or is dead (not retried, not sent on).
        var isFinal: Bool {
            switch self {
            case .succeeded, .dead: true
            case .forwarded, .retried: false
            }
        }
    }

    /// Log lines the decisions call for.
    enum Warning: Equatable, Sendable {
        /// A task named a workflow step the coordinator did not sign: it runs as a plain task.
        case unsignedStep(taskID: String, runID: String)
        /// The message carrying the outcome breaks a wire limit: what is sent instead.
        case overLimit(String)
        /// The broker refused a success's reply (unroutable, nacked, over a
        /// limit): the task is acknowledged, nobody is answered.
        case replyRefused(String)
    }

    private enum State: Sendable {
        case received
        case warnedUnsignedStep(TaskEnvelope, now: Date)
        case admitting(TaskEnvelope, now: Date)
        /// Publishing a copy that replaces the delivery (postponed, isolated);
        /// `onRefused`: the dead letter if the copy breaks a wire limit.
        case forwarding(onRefused: DeadLetter?)
        case running(TaskEnvelope, waited: Double?)
        /// Publishing the success event; `then`: the reply, still to send.
        case reportingSuccess(TaskEnvelope, then: OutboundMessage?)
        /// Publishing a success's reply to the producer waiting for it.
        case replyingSuccess(TaskEnvelope)
        case copyingRetry(TaskEnvelope, event: TaskEvent, onRefused: DeadLetter)
        case reportingRetry(TaskEnvelope)
        /// The `retrying` event of an in-place retry; then wait, then run `next`.
        case reportingInPlaceRetry(next: TaskEnvelope, delay: Int)
        case waitingToRetry(next: TaskEnvelope)
        case deadLettering(DeadLetter, trimmed: Bool)
        /// The dead copy is safe; the waiting producer is told, then the `dead` event reported.
        case replyingDead(DeadLetter, event: TaskEvent)
        case reportingDead(DeadLetter)
        /// A log line is out; then `next`, in state `resume`.
        indirect case warnedOverLimit(next: Action, resume: State)
        case done
    }

    /// A dead-letter in the making.
    private struct DeadLetter: Sendable {
        var task: TaskEnvelope?
        var reason: DeadReason
        var errorType: String
        var message: String
        var waited: Double?
        /// For a copy that could not be sent: the message, given the error.
        var explain: (@Sendable (String) -> String)?
    }

    private let settings: Settings
    private let queue: String
    /// The level the delivery was consumed from; nil for a queue that holds
    /// every level (isolation), where the task's header says.
    private let priority: TaskPriority?
    private let properties: BasicProperties
    private let body: [UInt8]
    private var state = State.received
    /// The unique key's lock the task holds until it finishes (its
    /// `sluice-unique` header, naming one of this prefix's lock queues):
    /// the worker gives it back once the delivery's final outcome is
    /// acknowledged (``Outcome/isFinal``).
    private(set) var uniqueLock: (ticket: UniqueLockTicket, taskID: String)?

    init(settings: Settings, queue: String, priority: TaskPriority? = .normal, properties: BasicProperties, body: [UInt8]) {
        self.settings = settings
        self.queue = queue
        self.priority = priority
        self.properties = properties
        self.body = body
    }

    // MARK: Inputs

    /// The delivery arrived: check it before anything runs.
    mutating func received(now: Date) -> Action {
        guard case .received = state else { return invalid("received") }
        if body.count > settings.maxBodyBytes {
            return deadLetter(DeadLetter(task: nil, reason: .tooLarge, errorType: "too_large",
                                         message: "body of \(body.count) bytes exceeds the limit of \(settings.maxBodyBytes)"))
        }
        var task: TaskEnvelope
        do {
            task = try TaskEnvelope.decode(properties: properties, body: body, queue: queue, priority: priority)
        } catch {
            return deadLetter(DeadLetter(task: nil, reason: error.reason, errorType: error.reason.rawValue, message: error.message))
        }
        if !task.otherHeaders.isEmpty, let value = task.otherHeaders[WireHeader.uniqueLock]?.stringValue,
           let ticket = UniqueLockTicket(headerValue: value), settings.topology.isUniqueLockQueue(ticket.queue) {
            uniqueLock = (ticket, task.id)
        }
        if let signer = settings.eventSigner, let runID = task.workflowRunID, !signer.verifyStep(task) {
            // Named a workflow step, but the coordinator did not sign it: it
            // runs as a plain task, and its outcome decides no step.
            let warning = Warning.unsignedStep(taskID: String(task.id.prefix(300)), runID: String(runID.prefix(300)))
            task.workflowRunID = nil
            task.workflowStep = nil
            state = .warnedUnsignedStep(task, now: now)
            return .log(warning)
        }
        return checkTime(task, now: now)
    }

    /// The log line asked for was written.
    mutating func logged() -> Action {
        switch state {
        case .warnedUnsignedStep(let task, let now):
            return checkTime(task, now: now)
        case .warnedOverLimit(let next, let resume):
            state = resume
            return next
        default:
            return invalid("logged")
        }
    }

    /// The admission hook's verdict (``Worker/Admission/run`` without one).
    mutating func admitted(_ verdict: Worker.Admission) -> Action {
        guard case .admitting(let task, let now) = state else { return invalid("admitted") }
        switch verdict {
        case .run:
            // Unknown when the message carried no time: reported as unknown, not as zero.
            let due = [task.enqueuedAt, task.notBefore].compactMap { $0 }.max()
            let waited = due.map { Self.toMicrosecond(max(0, now.timeIntervalSince($0) * 1000)) }
            state = .running(task, waited: waited)
            // A tracked task's start is its `running` status: reported if it still runs a moment later (Worker, DeferredStarts).
            let started = settings.publishStartedEvents || task.track
                ? eventMessage(TaskEvent(kind: .started, task: task, worker: settings.workerID)) : nil
            return .run(task, waitedMilliseconds: waited, started: started)
        case .isolate:
            // The same message, to the process that runs suspects alone; safe before the ack.
            state = .forwarding(onRefused: nil)
            return .publish(settings.topology.isolationMessage(queue: queue, properties: properties, body: body, priority: task.priority))
        case .deadLetter(let reason, let message):
            return deadLetter(DeadLetter(task: task, reason: reason, errorType: reason.rawValue, message: message))
        }
    }

    /// The task's name, for counters (the message's, before it is decoded).
    var taskName: String {
        if case .waitingToRetry(let next) = state { return next.name }
        return properties.type ?? "unknown"
    }

    /// The task waiting for an in-place retry, if that is the state.
    var taskWaitingToRetry: TaskEnvelope? {
        if case .waitingToRetry(let next) = state { return next }
        return nil
    }

    /// An in-place retry's backoff is over: the next attempt goes through
    /// the checks a retry copy would meet (deadline, revocation, admission).
    mutating func retryDue(now: Date) -> Action {
        guard case .waitingToRetry(let next) = state else { return invalid("retryDue") }
        return checkTime(next, now: now)
    }

    /// A revocation with `terminate` came during an in-place retry's backoff.
    mutating func retryRevoked(_ error: TaskRevoked) -> Action {
        guard case .waitingToRetry(let next) = state else { return invalid("retryRevoked") }
        return deadLetter(DeadLetter(task: next, reason: .revoked, errorType: "revoked", message: error.description, waited: nil))
    }

    /// No handler is registered under the task's name.
    mutating func noHandler(registered: [String]) -> Action {
        guard case .running(let task, _) = state else { return invalid("noHandler") }
        return deadLetter(DeadLetter(task: task, reason: .unknownTask, errorType: "unknown_task",
                                     message: "no handler is registered for \(task.name) (this worker has: \(registered.joined(separator: ", ")))"))
    }

    /// Milliseconds carried to the microsecond: finer is noise (a `Date` of
    /// today resolves about 0.2 µs), and events write such values as plain
    /// digits (``TaskEvent/jsonBytes()``) instead of formatting a Double.
    static func toMicrosecond(_ milliseconds: Double) -> Double {
        (milliseconds * 1000).rounded() / 1000
    }

    /// The handler returned or threw. `jitter` (0..<1) spreads retry delays.
    mutating func handlerFinished(_ outcome: Result<[UInt8]?, any Error>, milliseconds: Double, now: Date,
                                  jitter: Double) -> Action {
        guard case .running(let task, let waited) = state else { return invalid("handlerFinished") }
        let milliseconds = Self.toMicrosecond(milliseconds)
        switch outcome {
        case .success(let result):
            state = .reportingSuccess(task, then: nil)
            // Nobody listens and nobody waits: the ack alone is the outcome
            // (asked before the event is built).
            let key = settings.topology.eventRoutingKey(kind: .succeeded, queue: task.queue, runID: task.workflowRunID, tracked: task.track)
            let wanted = eventWanted(key)
            let replyTo = replyAddress
            guard wanted || replyTo != nil else { return finish(.succeeded(task: task.name)) }
            var event = TaskEvent(kind: .succeeded, task: task, worker: settings.workerID)
            event.durationMilliseconds = milliseconds
            event.waitMilliseconds = waited
            if let result {
                if result.count > settings.maxResultBytes {
                    event.errorMessage = "result of \(result.count) bytes exceeds the limit of \(settings.maxResultBytes) and was dropped"
                } else {
                    event.result = String(decoding: result, as: UTF8.self)
                }
            }
            // The event and the reply are the outcome: both confirmed before the ack.
            let reply = replyTo.map { replyMessage(event, to: $0) }
            guard wanted else {
                state = .replyingSuccess(task)
                return .publish(reply!)
            }
            state = .reportingSuccess(task, then: reply)
            return .publish(eventMessage(event))
        case .failure(let error as TaskRevoked):
            return deadLetter(DeadLetter(task: task, reason: .revoked, errorType: "revoked", message: error.description, waited: waited))
        case .failure(let error):
            let (kind, message, retryable) = Self.describe(error)
            let policy = task.retryPolicy ?? settings.retryPolicy
            let maxAttempts = task.maxAttempts ?? (task.retryPolicy == nil ? nil : settings.retryPolicy.maxAttempts)
            let decision: RetryDecision = retryable && !settings.retryPolicy.nonRetryable.contains(kind)
                ? policy.decision(afterAttempt: task.attempt, errorKind: kind, maxAttemptsOverride: maxAttempts, unit: jitter)
                : .dead(.nonRetryable)
            switch decision {
            case .retry(let delay) where retriesInPlace:
                var next = task
                next.attempt += 1
                var event = TaskEvent(kind: .retrying, task: task, worker: settings.workerID)
                event.errorType = kind
                event.errorMessage = message
                event.nextDelayMilliseconds = delay
                event.durationMilliseconds = milliseconds
                event.waitMilliseconds = waited
                state = .reportingInPlaceRetry(next: next, delay: delay)
                return report(event)
            case .retry(let delay):
                var next = task
                next.attempt += 1
                next.notBefore = now.addingTimeInterval(Double(delay) / 1000)
                var event = TaskEvent(kind: .retrying, task: task, worker: settings.workerID)
                event.errorType = kind
                event.errorMessage = message
                event.nextDelayMilliseconds = delay
                event.durationMilliseconds = milliseconds
                event.waitMilliseconds = waited
                // The copy must be safe before the ack; the event only reports
                // (publishing both as one batch could requeue a task whose copy exists).
                let refused = DeadLetter(task: task, reason: .tooLarge, errorType: "too_large", message: "", waited: waited,
                                         explain: { "the retry copy cannot be sent (\($0)); the attempt failed with \(kind): \(message)" })
                state = .copyingRetry(task, event: event, onRefused: refused)
                return .publish(settings.topology.message(for: next, now: now))
            case .dead(let reason):
                return deadLetter(DeadLetter(task: task, reason: reason, errorType: kind, message: message, waited: waited))
            }
        }
    }

    /// The outcome that ``published()`` acknowledges at once, when the last
    /// ``Action/publish(_:)`` is all that stands before the ack: a success
    /// reported with no reply to send and no unique lock to give back. The
    /// worker may then settle the delivery wherever the publish's confirm
    /// arrives (see ``Worker``'s packed outcomes), without this machine.
    var ackAfterPublish: Outcome? {
        guard case .reportingSuccess(let task, nil) = state, uniqueLock == nil else { return nil }
        return .succeeded(task: task.name)
    }

    /// The broker confirmed the message of the last ``Action/publish(_:)``.
    mutating func published() -> Action {
        switch state {
        case .forwarding:
            return finish(.forwarded)
        case .reportingSuccess(let task, let reply?):
            state = .replyingSuccess(task)
            return .publish(reply)
        case .reportingSuccess(let task, nil), .replyingSuccess(let task):
            return finish(.succeeded(task: task.name))
        case .copyingRetry(let task, let event, _):
            state = .reportingRetry(task)
            return report(event)
        case .deadLettering(let dead, _):
            var event = deadEvent(dead)
            event.deadReason = dead.reason
            event.waitMilliseconds = dead.waited
            event.errorType = dead.errorType
            event.errorMessage = dead.message
            if let replyTo = replyAddress {
                state = .replyingDead(dead, event: event)
                return .publishEvent(replyMessage(event, to: replyTo))
            }
            state = .reportingDead(dead)
            return report(event)
        default:
            return invalid("published")
        }
    }

    /// The broker refused the message of the last ``Action/publish(_:)``
    /// for where it was going or what it is (``PublishFailure/isRefusedByDestination(_:)``:
    /// unroutable, nacked, over a wire limit), not for the connection.
    mutating func publishRefused(_ error: any Error) -> Action {
        if case .replyingSuccess(let task) = state {
            // The reply's queue is gone, full or without quorum, or the reply
            // does not fit: the success stands (running the handler again
            // would not change that). Nobody is answered.
            return warnThen(.replyRefused("\(error)"), finish(.succeeded(task: task.name)))
        }
        // Anything but a wire limit is the connection's or the queue's
        // trouble: the delivery comes back.
        guard PublishFailure.isOverLimit(error) else {
            state = .done
            return .fail(error)
        }
        switch state {
        case .forwarding(let onRefused?):
            return warnThen(.overLimit("\(error)"), deadLetter(onRefused, error: error))
        case .copyingRetry(_, _, let onRefused):
            return warnThen(.overLimit("\(error)"), deadLetter(onRefused, error: error))
        case .deadLettering(var dead, false):
            // The message with our headers added does not fit a frame: the
            // dead copy keeps the body and Sluice's own headers only.
            dead.reason = .tooLarge
            state = .deadLettering(dead, trimmed: true)
            let copy = deadCopy(DeadLetter(task: dead.task, reason: .tooLarge, errorType: dead.errorType,
                                           message: "\(dead.message) (headers trimmed: \(error))", waited: dead.waited), trimmed: true)
            return warnThen(.overLimit("\(error)"), .publish(copy))
        default:
            state = .done
            return .fail(error)
        }
    }

    /// The report asked for by ``Action/publishEvent(_:)`` went (or failed).
    mutating func eventSent() -> Action {
        switch state {
        case .replyingDead(let dead, let event):
            state = .reportingDead(dead)
            return report(event)
        case .reportingRetry(let task):
            return finish(.retried(task: task.name))
        case .reportingInPlaceRetry(let next, let delay):
            state = .waitingToRetry(next: next)
            return .retryInPlace(afterMilliseconds: delay)
        case .reportingDead(let dead):
            return finish(.dead(task: dead.task?.name ?? properties.type ?? "unknown",
                                id: dead.task?.id ?? properties.messageId ?? "?", reason: dead.reason, message: dead.message))
        default:
            return invalid("eventSent")
        }
    }

    // MARK: Decisions

    private mutating func checkTime(_ task: TaskEnvelope, now: Date) -> Action {
        if let deadline = task.deadline, deadline < now || (task.notBefore.map { $0 > deadline } ?? false) {
            return deadLetter(DeadLetter(task: task, reason: .deadlineExpired, errorType: "deadline_expired",
                                         message: "the deadline \(deadline) passed (or falls before the task may start)"))
        }
        if let notBefore = task.notBefore, notBefore.timeIntervalSince(now) > 0.02 {
            // Early from the delay ladder (a long wait hops through tiers): back it goes.
            state = .forwarding(onRefused: DeadLetter(task: task, reason: .tooLarge, errorType: "too_large", message: "",
                                                      explain: { "the task's copy for its next delay tier cannot be sent: \($0)" }))
            return .publish(settings.topology.message(for: task, now: now))
        }
        state = .admitting(task, now: now)
        return .admit(task)
    }

    private mutating func deadLetter(_ dead: DeadLetter, error: (any Error)? = nil) -> Action {
        var dead = dead
        if let error, let explain = dead.explain { dead.message = explain("\(error)") }
        state = .deadLettering(dead, trimmed: false)
        return .publish(deadCopy(dead, trimmed: false))
    }

    /// Logs first; `next` was made by a decision that already set the state to return to.
    private mutating func warnThen(_ warning: Warning, _ next: Action) -> Action {
        state = .warnedOverLimit(next: next, resume: state)
        return .log(warning)
    }

    private mutating func finish(_ outcome: Outcome) -> Action {
        state = .done
        return .ack(outcome)
    }

    private mutating func invalid(_ input: String) -> Action {
        // A bug in the driver, not in the input: fail the delivery (it comes back) rather than crash.
        let error = SluiceError(.broker, "settlement: \(input) in state \(state)")
        state = .done
        return .fail(error)
    }

    // MARK: Messages

    /// The `dead` event, for a task or for a message that did not decode.
    private func deadEvent(_ dead: DeadLetter) -> TaskEvent {
        // An undecodable message is still tracked if it asked to be.
        let task = dead.task ?? TaskEnvelope(id: properties.messageId ?? "", name: properties.type ?? "", queue: queue, arguments: [],
                                             track: properties.headers?[WireHeader.track].map(TaskEnvelope.isTrue) ?? false)
        return TaskEvent(kind: .dead, task: task, worker: settings.workerID)
    }

    private func deadCopy(_ dead: DeadLetter, trimmed: Bool) -> OutboundMessage {
        // The copy carries the outcome's signature too: the coordinator may
        // learn of the death from the dead queue alone.
        var event = deadEvent(dead)
        event.deadReason = dead.reason
        var properties = properties
        // After retries in place the delivery still says its first attempt: the copy says the last.
        if let attempt = dead.task?.attempt, attempt > 1, retriesInPlace {
            properties.headers = (properties.headers ?? [:])
            properties.headers![WireHeader.attempt] = .int64(Int64(attempt))
        }
        return settings.topology.deadMessage(queue: queue, properties: properties, body: body, reason: dead.reason,
                                             errorType: dead.errorType, errorMessage: dead.message,
                                             worker: settings.workerID, signature: settings.eventSigner?.signature(of: event),
                                             trimmed: trimmed, priority: dead.task?.priority ?? priority ?? .normal)
    }

    /// A report's event, or straight on when nobody wants it.
    private mutating func report(_ event: TaskEvent) -> Action {
        guard eventWanted(settings.topology.eventRoutingKey(for: event)) else { return eventSent() }
        return .publishEvent(eventMessage(event))
    }

    /// An event's message, signed when the worker has an event key.
    /// A step outcome whose coordinator asked for packs gets the pack key:
    /// the worker's ``EventPacker`` sends it with the others ready then.
    private func eventMessage(_ event: TaskEvent) -> OutboundMessage {
        var message = settings.topology.eventMessage(settings.eventSigner.map { $0.signed(event) } ?? event)
        if event.workflowRunID != nil, Topology.packedEventKinds.contains(event.kind), let bucket = eventPackBucket {
            message.routingKey = settings.topology.eventPackRoutingKey(bucket: bucket, kind: event.kind)
        }
        return message
    }

    /// The delivery's ``TaskEnvelope/eventPackBucket``, read from its headers
    /// (a step task that did not decode reports nothing to a coordinator).
    private var eventPackBucket: Int? {
        guard let value = properties.headers?[WireHeader.eventPack]?.intValue,
              (0..<Topology.stepEventBuckets).contains(value) else { return nil }
        return value
    }

    /// Where the delivery asks for its final outcome (`reply_to`), if it is
    /// an address a worker may answer to (``Topology/isReplyAddress(_:)``);
    /// any other is ignored. Read from the delivery itself, so that a
    /// message that did not decode as a task is answered too.
    private var replyAddress: String? {
        guard let address = properties.replyTo, settings.topology.isReplyAddress(address) else { return nil }
        return address
    }

    /// The reply carrying a final outcome, signed like its event.
    private func replyMessage(_ event: TaskEvent, to address: String) -> OutboundMessage {
        settings.topology.replyMessage(settings.eventSigner.map { $0.signed(event) } ?? event, to: address)
    }

    /// The error's kind (for the retry policy), text, and whether it may be retried.
    static func describe(_ error: any Error) -> (kind: String, message: String, retryable: Bool) {
        if let failure = error as? TaskFailure { return (failure.kind, failure.message, failure.retryable) }
        return (String(describing: type(of: error)), String(describing: error), true)
    }
}
