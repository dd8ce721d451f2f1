import Foundation
import SluiceCore
import SluiceWire
@testable import SluiceWorker
import Synchronization
import Testing

/// The settlement decisions, driven by hand: no broker, no handler, no clock.
@Suite("Settlement state machine")
struct SettlementStateMachineTests {
    static let topology = try! Topology(prefix: "unit")
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func settings(signer: EventSigner? = nil, started: Bool = false) -> SettlementStateMachine.Settings {
        .init(topology: topology, workerID: "host:1", maxBodyBytes: 1 << 20, maxResultBytes: 8,
              retryPolicy: RetryPolicy(maxAttempts: 3), eventSigner: signer, publishStartedEvents: started)
    }

    static func machine(_ task: TaskEnvelope, signer: EventSigner? = nil, started: Bool = false) -> SettlementStateMachine {
        let (properties, body) = task.encode()
        return SettlementStateMachine(settings: settings(signer: signer, started: started), queue: task.queue,
                                      properties: properties, body: body)
    }

    static func task(attempt: Int = 1, notBefore: Date? = nil, deadline: Date? = nil) -> TaskEnvelope {
        TaskEnvelope(id: "t-1", name: "emails.send", queue: "emails", arguments: Array("{}".utf8), attempt: attempt,
                     notBefore: notBefore, deadline: deadline, enqueuedAt: now.addingTimeInterval(-2))
    }

    /// The message of a `.publish` action, or a recorded issue.
    static func published(_ action: SettlementStateMachine.Action, sourceLocation: SourceLocation = #_sourceLocation) -> OutboundMessage? {
        guard case .publish(let message) = action else {
            Issue.record("expected a publish, got \(action)", sourceLocation: sourceLocation)
            return nil
        }
        return message
    }

    static func event(_ action: SettlementStateMachine.Action) throws -> TaskEvent {
        switch action {
        case .publish(let message), .publishEvent(let message): return try TaskEvent.decode(message.body)
        default: throw SluiceError(.invalidArgument, "no event in \(action)")
        }
    }

    static func deadReason(_ message: OutboundMessage?) -> String? {
        message?.properties.headers?[WireHeader.deadReason]?.stringValue
    }

    /// Drives a delivery to its handler.
    static func toHandler(_ machine: inout SettlementStateMachine) -> SettlementStateMachine.Action {
        let first = machine.received(now: now)
        guard case .admit = first else { return first }
        return machine.admitted(.run)
    }

    @Test("success: the succeeded event is the outcome, confirmed before the ack")
    func success() throws {
        var m = Self.machine(Self.task())
        guard case .run(let task, let waited, let started) = Self.toHandler(&m) else { Issue.record("not run"); return }
        #expect(task.id == "t-1")
        #expect(waited == 2000, "waited since it was enqueued")
        #expect(started == nil, "started events are off")
        let publish = m.handlerFinished(.success(Array("ok".utf8)), milliseconds: 5, now: Self.now, jitter: 0)
        let event = try Self.event(publish)
        #expect(event.kind == .succeeded)
        #expect(event.result == "ok")
        #expect(event.durationMilliseconds == 5)
        #expect(Self.published(publish)?.exchange == Self.topology.eventsExchange)
        guard case .ack(.succeeded(task: "emails.send")) = m.published() else { Issue.record("no ack"); return }
    }

    @Test("ackAfterPublish: a success with nothing after its event may be acked where the confirm arrives; with a reply or a unique lock it may not")
    func ackAfterPublish() throws {
        var plain = Self.machine(Self.task())
        #expect(plain.ackAfterPublish == nil, "nothing to ack before the handler ran")
        _ = Self.toHandler(&plain)
        #expect(plain.ackAfterPublish == nil)
        _ = Self.published(plain.handlerFinished(.success(nil), milliseconds: 1, now: Self.now, jitter: 0))
        guard case .succeeded(task: "emails.send")? = plain.ackAfterPublish else { Issue.record("\(String(describing: plain.ackAfterPublish))"); return }
        guard case .ack(.succeeded(task: "emails.send")) = plain.published() else { Issue.record("no ack"); return }

        // A reply still to send after the event.
        var waited = Self.machine(SettlementRepliesTests.task())
        _ = Self.toHandler(&waited)
        _ = Self.published(waited.handlerFinished(.success(nil), milliseconds: 1, now: Self.now, jitter: 0))
        #expect(waited.ackAfterPublish == nil)

        // A unique key's lock to give back after the ack.
        var unique = Self.task()
        unique.otherHeaders[WireHeader.uniqueLock] = .string(UniqueLockTicket(
            queue: Self.topology.uniqueLockQueue(UniqueKey("k", for: .seconds(60))), expiresAt: Self.now.addingTimeInterval(60)).headerValue)
        var locked = Self.machine(unique)
        _ = Self.toHandler(&locked)
        _ = Self.published(locked.handlerFinished(.success(nil), milliseconds: 1, now: Self.now, jitter: 0))
        #expect(locked.uniqueLock != nil)
        #expect(locked.ackAfterPublish == nil)

        // A failure: its retry copy comes first.
        var failed = Self.machine(Self.task())
        _ = Self.toHandler(&failed)
        _ = Self.published(failed.handlerFinished(.failure(TaskFailure("no")), milliseconds: 1, now: Self.now, jitter: 0))
        #expect(failed.ackAfterPublish == nil)
    }

    @Test("an event nobody wants is not built: success is acked at once, a retry's copy still goes first")
    func unwantedEvents() throws {
        let askedBox = Mutex<[String]>([])
        var m = Self.machine(Self.task())
        m.eventWanted = { key in askedBox.withLock { $0.append(key) }; return false }
        _ = Self.toHandler(&m)
        guard case .ack(.succeeded(task: "emails.send")) = m.handlerFinished(.success(nil), milliseconds: 1, now: Self.now, jitter: 0) else {
            Issue.record("a success nobody listens to should be acked without a publish"); return
        }
        #expect(askedBox.withLock { $0 } == [Self.topology.eventRoutingKey(queue: "emails", kind: .succeeded)])

        var r = Self.machine(Self.task())
        r.eventWanted = { _ in false }
        _ = Self.toHandler(&r)
        let copy = Self.published(r.handlerFinished(.failure(TaskFailure(kind: "smtp", "down")), milliseconds: 1, now: Self.now, jitter: 0))
        #expect(copy?.exchange.hasPrefix("unit.delay.") == true, "the retry copy is the outcome: always published")
        guard case .ack(.retried(task: "emails.send")) = r.published() else { Issue.record("no ack after the copy"); return }

    }

    @Test("a result over the limit is dropped from the event, with a note")
    func bigResult() throws {
        var m = Self.machine(Self.task())
        _ = Self.toHandler(&m)
        let event = try Self.event(m.handlerFinished(.success(Array("0123456789".utf8)), milliseconds: 1, now: Self.now, jitter: 0))
        #expect(event.result == nil)
        #expect(event.errorMessage?.contains("10 bytes") == true)
    }

    @Test("a failure with attempts left: the retry copy first, then the retrying report, then the ack")
    func retry() throws {
        var m = Self.machine(Self.task())
        _ = Self.toHandler(&m)
        let copy = Self.published(m.handlerFinished(.failure(TaskFailure(kind: "smtp", "down")), milliseconds: 1, now: Self.now, jitter: 0))
        #expect(copy?.exchange.hasPrefix("unit.delay.") == true, "through the delay ladder: \(copy?.exchange ?? "")")
        let next = try TaskEnvelope.decode(properties: copy!.properties, body: copy!.body, queue: "emails")
        #expect(next.attempt == 2)
        #expect(next.notBefore! > Self.now)
        let report = m.published()
        guard case .publishEvent = report else { Issue.record("no report: \(report)"); return }
        let event = try Self.event(report)
        #expect(event.kind == .retrying)
        #expect(event.errorType == "smtp")
        guard case .ack(.retried(task: "emails.send")) = m.eventSent() else { Issue.record("no ack"); return }
    }

    @Test("the last attempt and non-retryable failures are dead-lettered with their reason")
    func dead() throws {
        var last = Self.machine(Self.task(attempt: 3))
        _ = Self.toHandler(&last)
        let copy = Self.published(last.handlerFinished(.failure(TaskFailure("no")), milliseconds: 1, now: Self.now, jitter: 0))
        #expect(copy?.exchange == Self.topology.deadExchange)
        #expect(Self.deadReason(copy) == "max_attempts")
        #expect(try Self.event(last.published()).kind == .dead)
        guard case .ack(.dead(_, "t-1", .maxAttempts, "no")) = last.eventSent() else { Issue.record("no ack"); return }

        var fatal = Self.machine(Self.task())
        _ = Self.toHandler(&fatal)
        let fatalCopy = Self.published(fatal.handlerFinished(.failure(TaskFailure(kind: "bad", "input", retryable: false)),
                                                             milliseconds: 1, now: Self.now, jitter: 0))
        #expect(Self.deadReason(fatalCopy) == "non_retryable")
    }

    @Test("a retry copy that breaks a wire limit dead-letters the task as too_large, saying why")
    func retryCopyRefused() throws {
        var m = Self.machine(Self.task())
        _ = Self.toHandler(&m)
        _ = m.handlerFinished(.failure(TaskFailure("x")), milliseconds: 1, now: Self.now, jitter: 0)
        let refused = AMQPError(.unencodable, operation: "publish", message: "too big")
        guard case .log(.overLimit) = m.publishRefused(refused) else { Issue.record("not logged"); return }
        let dead = Self.published(m.logged())
        #expect(Self.deadReason(dead) == "too_large")
        #expect(dead?.properties.headers?[WireHeader.errorMessage]?.stringValue?.contains("retry copy cannot be sent") == true)
        _ = m.published()
        guard case .ack(.dead(_, _, .tooLarge, _)) = m.eventSent() else { Issue.record("no ack"); return }
    }

    @Test("a dead copy that breaks a wire limit is sent again trimmed; a trimmed copy refused fails the delivery")
    func deadCopyRefused() throws {
        var m = Self.machine(Self.task(attempt: 3))
        _ = Self.toHandler(&m)
        _ = m.handlerFinished(.failure(TaskFailure("x")), milliseconds: 1, now: Self.now, jitter: 0)
        let refused = AMQPError(.unencodable, operation: "publish", message: "too big")
        guard case .log = m.publishRefused(refused) else { Issue.record("not logged"); return }
        let trimmed = Self.published(m.logged())
        #expect(Self.deadReason(trimmed) == "too_large")
        #expect(trimmed?.properties.headers?[WireHeader.trimmedHeaders] != nil)
        guard case .fail = m.publishRefused(refused) else { Issue.record("a refused trimmed copy did not fail"); return }

        var sent = Self.machine(Self.task(attempt: 3))
        _ = Self.toHandler(&sent)
        _ = sent.handlerFinished(.failure(TaskFailure("x")), milliseconds: 1, now: Self.now, jitter: 0)
        _ = sent.publishRefused(refused)
        _ = sent.logged()
        let report = try Self.event(sent.published())
        #expect(report.deadReason == .tooLarge)
        guard case .ack(.dead(_, _, .tooLarge, _)) = sent.eventSent() else { Issue.record("no ack after the trimmed copy"); return }
    }

    @Test("bad deliveries are dead-lettered before anything runs: too large, undecodable, past their deadline")
    func badDeliveries() throws {
        var big = SettlementStateMachine(settings: .init(topology: Self.topology, workerID: "w", maxBodyBytes: 4, maxResultBytes: 1,
                                                         retryPolicy: RetryPolicy(), eventSigner: nil, publishStartedEvents: false),
                                         queue: "emails", properties: BasicProperties(), body: Array("12345".utf8))
        #expect(Self.deadReason(Self.published(big.received(now: Self.now))) == "too_large")

        var garbage = SettlementStateMachine(settings: Self.settings(), queue: "emails", properties: BasicProperties(),
                                             body: Array("{}".utf8))
        #expect(Self.deadReason(Self.published(garbage.received(now: Self.now))) == "invalid_envelope")

        var late = Self.machine(Self.task(deadline: Self.now.addingTimeInterval(-1)))
        #expect(Self.deadReason(Self.published(late.received(now: Self.now))) == "deadline_expired")
    }

    @Test("a task early from the delay ladder goes back to it, and its delivery is acknowledged")
    func early() throws {
        var m = Self.machine(Self.task(notBefore: Self.now.addingTimeInterval(30)))
        let copy = Self.published(m.received(now: Self.now))
        #expect(copy?.exchange.hasPrefix("unit.delay.") == true)
        guard case .ack(.forwarded) = m.published() else { Issue.record("no ack"); return }
    }

    @Test("admission: isolate forwards the delivery unchanged; dead-letter uses the given reason")
    func admission() throws {
        var isolated = Self.machine(Self.task())
        _ = isolated.received(now: Self.now)
        let copy = Self.published(isolated.admitted(.isolate))
        #expect(copy?.exchange == Self.topology.isolationExchange)
        #expect(copy?.routingKey == "emails")
        guard case .ack(.forwarded) = isolated.published() else { Issue.record("no ack"); return }

        var refusedIsolation = Self.machine(Self.task())
        _ = refusedIsolation.received(now: Self.now)
        _ = refusedIsolation.admitted(.isolate)
        guard case .fail = refusedIsolation.publishRefused(AMQPError(.unencodable, operation: "p", message: "m")) else {
            Issue.record("an isolation copy that cannot be sent must leave the delivery unacknowledged")
            return
        }

        var crashed = Self.machine(Self.task())
        _ = crashed.received(now: Self.now)
        #expect(Self.deadReason(Self.published(crashed.admitted(.deadLetter(.crashedWorker, "crashed twice")))) == "crashed_worker")
    }

    @Test("no handler: dead-lettered as unknown_task, naming the registered ones")
    func unknownTask() throws {
        var m = Self.machine(Self.task())
        _ = Self.toHandler(&m)
        let copy = Self.published(m.noHandler(registered: ["a", "b"]))
        #expect(Self.deadReason(copy) == "unknown_task")
        #expect(copy?.properties.headers?[WireHeader.errorMessage]?.stringValue?.contains("a, b") == true)
    }

    @Test("with an event key, a step the coordinator did not sign runs as a plain task; outcomes are signed")
    func signatures() throws {
        let signer = try EventSigner(key: Array("0123456789abcdef0123456789abcdef".utf8))
        var step = Self.task()
        step.workflowRunID = "run-1"
        step.workflowStep = "s"
        var m = Self.machine(step, signer: signer, started: true)
        guard case .log(.unsignedStep(taskID: "t-1", runID: "run-1")) = m.received(now: Self.now) else { Issue.record("not logged"); return }
        guard case .admit(let plain) = m.logged() else { Issue.record("not admitted"); return }
        #expect(plain.workflowRunID == nil)
        guard case .run(_, _, let started?) = m.admitted(.run) else { Issue.record("no started event"); return }
        #expect(try TaskEvent.decode(started.body).kind == .started)
        let event = try Self.event(m.handlerFinished(.success(nil), milliseconds: 1, now: Self.now, jitter: 0))
        #expect(signer.verify(event))
    }

    @Test("inputs out of order fail the delivery instead of crashing")
    func outOfOrder() {
        var m = Self.machine(Self.task())
        guard case .fail = m.published() else { Issue.record("accepted published() first"); return }
    }
}
