import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SluiceCore
import SluiceWire
import SluiceWorkflow
import Synchronization

/// The outbox relay: step tasks (and messages to other coordinators)
/// published after the commit that decided them.
extension Coordinator {
    func relayOutbox() async throws {
        var prepared: Set<String> = []
        let feed = engine.outboxFeed
        // What was published lately: a row read from the store and handed
        // over by the feed too (the two race right after a commit) goes once.
        var recent = RecentIDs(capacity: OutboxFeed.undeletedCapacity)
        // The store holds rows of earlier leaders, of schedules, and any the feed dropped.
        var readStore = true
        // Rows only the store has (written by another coordinator into this
        // one's partitions, by a schedule, or left by a failed publish) are
        // read at least this often, even while the feed never runs dry.
        var lastStoreRead = ContinuousClock.now
        // Paging through the store: the highest id of the last full batch
        // read (nil: the next read starts at the oldest row), and when this
        // pass began at the oldest row. A pass starts over after a few
        // seconds and when rows were written around the feed (rows with
        // lower ids can appear behind it: a takeover's backlog; in
        // PostgreSQL, a transaction that drew its ids earlier and committed
        // later), but never while pages are read one after another: a pass
        // through a backlog too long to page through in a few seconds (a
        // slow store) would otherwise start over before its end, forever.
        var pageAfter: Int64?
        var passStarted = ContinuousClock.now
        var startPassOver = false
        // The last store read asked for the next page at once.
        var paging = false
        feed.clear()
        while true {
            let revoked = feed.takeRevoked()
            if !revoked.isEmpty { await revokeSteps(revoked) }
            // Published rows whose deletion failed: deleted with the next commit.
            let undeleted = feed.takeUndeleted()
            if !undeleted.isEmpty { await engine.markSentSoon(undeleted) }
            if feed.takeStoreChanged() {
                readStore = true
                startPassOver = true
            }
            if ContinuousClock.now - lastStoreRead > .seconds(1) { readStore = true }
            var entries: [OutboxEntry]
            if readStore {
                // The store first, oldest first, page by page: it has every
                // row the feed has, and those it alone has (a backlog after
                // a takeover, a burst of schedules) would otherwise wait
                // behind a feed that never runs dry. A page goes on from the
                // last full one's highest id: at the front lie rows published
                // already (handed over by the feed; their deletion waits for
                // the next commit), and reading from the oldest again would
                // return only those. The next page is read at once after a
                // page of such rows, or one with rows older than the feed's
                // oldest (the feed has only this engine's later commits:
                // those are the store's alone), or while the feed is empty.
                // Otherwise the page's rows are the feed's, and decoding the
                // rest from the store too cost a 10,000-element map half
                // again its time: the next page waits for the next reason to
                // read (at most a second).
                if !paging, startPassOver || ContinuousClock.now - passStarted > .seconds(5) {
                    pageAfter = nil
                    startPassOver = false
                }
                if pageAfter == nil { passStarted = .now }
                let rows = try await store.unsentOutboxRows(limit: configuration.outboxBatch, after: pageAfter ?? 0)
                let full = rows.count == configuration.outboxBatch
                pageAfter = full ? rows.last?.id : nil
                // Rows published already are skipped undecoded.
                entries = try rows.compactMap { recent.contains($0.id) ? nil : try $0.decode() }
                let feedHead = feed.oldestID
                readStore = full && (entries.isEmpty || feedHead == nil || entries[0].id < feedHead!)
                paging = readStore
                lastStoreRead = .now
            } else {
                let taken = feed.take(max: configuration.outboxBatch)
                entries = taken.entries.filter { !recent.contains($0.id) }
                if taken.overflowed { readStore = true }
            }
            if entries.isEmpty, !feed.isEmpty {
                // Nothing new in the store (or only rows it does not return
                // here: another partition's messages): the feed's rows go
                // now, not after a wait, which could loop on store reads
                // while they wait.
                let taken = feed.take(max: configuration.outboxBatch)
                entries = taken.entries.filter { !recent.contains($0.id) }
                if taken.overflowed { readStore = true }
            }
            if entries.isEmpty {
                let signaled = await wake.wait(upTo: configuration.pollInterval)
                // Nothing handed over in a whole poll interval: look in the
                // store, in case. Not after a signal: it comes with rows in
                // the feed (or a store change, flagged), and a signal kept
                // from an append whose rows were taken already would send
                // the relay to the store between every two commits.
                if !signaled, feed.isEmpty { readStore = true }
                continue
            }
            // Messages for runs this coordinator leads (a start the store
            // decided when a concurrency slot freed up) apply here; applying
            // one twice changes nothing (see ``RunMessage``).
            let messageRuns = entries.compactMap { if case .message(let m) = $0.item { m.runID } else { nil } }
            let led = messageRuns.isEmpty ? [] : await engine.led(among: messageRuns)
            let local = entries.filter { if case .message(let m) = $0.item { led.contains(m.runID) } else { false } }
            if !local.isEmpty {
                let ids = Set(local.map(\.id))
                entries.removeAll { ids.contains($0.id) }
                do {
                    try await engine.apply([], messages: local.compactMap { if case .message(let m) = $0.item { m } else { nil } })
                    for id in ids { recent.insert(id) }
                    // Deleted like published rows (asked again if that commit fails).
                    await engine.markSentSoon(Array(ids))
                } catch where !(error is CancellationError) && !Self.isLeaseLoss(error) {
                    // Left in the store and tried again when a store read
                    // starts over at the oldest row (within seconds); the
                    // rows behind them go on meanwhile.
                    logger.warning("run messages for runs this coordinator leads could not be applied; they are tried again",
                                   metadata: ["count": "\(ids.count)", "error": "\(error)"])
                }
            }
            // Messages for runs in other coordinators' partitions go to those partitions' queues.
            var messages: [(entry: OutboxEntry, message: OutboundMessage)] = []
            entries.removeAll { entry in
                guard case .message(let message) = entry.item else { return false }
                do {
                    messages.append((entry, try outbound(message)))
                } catch {
                    logger.error("a run message cannot be encoded; it is dropped", metadata: ["run": "\(message.runID)", "error": "\(error)"])
                }
                return true
            }
            let queues = Set(entries.compactMap { $0.task.map { $0.queue ?? configuration.defaultQueue } }).subtracting(prepared)
            if !queues.isEmpty {
                try await broker.prepare(queues: Array(queues))
                try await broker.watchDeadLetters(of: Array(queues))
                prepared.formUnion(queues)
            }
            // A task that can never be published (over an AMQP limit) fails
            // its step instead of holding its row, and the rows behind it, forever.
            // Each envelope built once (with a key it carries an HMAC).
            var sendable = entries.compactMap { entry -> (entry: OutboxEntry, message: OutboundMessage, task: TaskEnvelope)? in
                guard let step = entry.task else { return nil }
                let task = envelope(step)
                return (entry: entry, message: broker.topology.message(for: task), task: task)
            }
            var refused: [(OutboxEntry, DeadReason, String)] = []
            sendable.removeAll { item in
                do throws(SluiceError) {
                    try item.task.validateLimits(encodedAs: item.message.properties)
                    return false
                } catch {
                    refused.append((item.entry, .invalidEnvelope, error.message))
                    return true
                }
            }
            let outgoing = sendable.map(\.message) + messages.map(\.message)
            let results = outgoing.isEmpty ? [] : try await broker.publish(outgoing)
            var sent: [Int64] = []
            var transientFailures = 0
            for (entry, result) in zip(sendable.map(\.entry) + messages.map(\.entry), results) {
                switch result {
                case .success: sent.append(entry.id)
                case .failure(let error) where PublishFailure.isOverLimit(error):
                    refused.append((entry, .tooLarge, "\(error)"))
                case .failure(let error):
                    transientFailures += 1
                    logger.warning("a step task was not confirmed; it will be published again", metadata: [
                        "task.id": "\(entry.task?.taskID ?? "")", "run": "\(entry.runID)", "error": "\(error)"])
                }
            }
            for (entry, reason, message) in refused {
                try await failUnpublishable(entry, reason: reason, message: message)
                sent.append(entry.id)
            }
            for id in sent { recent.insert(id) }
            // With the next commit of events: no transaction of its own, and
            // not waited for. (Waiting here for rows read from the store
            // would make the relay commit-bound under load: the store always
            // holds rows the feed is about to hand over.)
            await engine.markSentSoon(sent)
            if transientFailures > 0 {
                // The unconfirmed rows are still in the store (from the oldest).
                readStore = true
                pageAfter = nil
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Revokes the published step tasks of cancelled runs, so that workers
    /// drop those they have not started. Best effort: if the broker does not
    /// take it, the tasks run and their outcomes are ignored.
    func revokeSteps(_ taskIDs: [String]) async {
        do {
            try await broker.revoke(taskIDs, reason: "its workflow run was cancelled")
            logger.debug("revoked the step tasks of cancelled runs", metadata: ["count": "\(taskIDs.count)"])
        } catch {
            logger.warning("could not revoke the step tasks of a cancelled run; they may still run (their outcomes are ignored)",
                           metadata: ["count": "\(taskIDs.count)", "error": "\(error)"])
        }
    }

    /// Fails the step of a task that cannot be published, as if a worker had
    /// dead-lettered it with `reason`; the run then goes on by its rules.
    func failUnpublishable(_ entry: OutboxEntry, reason: DeadReason, message: String) async throws {
        guard let step = entry.task else {
            guard case .message(let runMessage) = entry.item,
                  case .childFinished(let key, true, _, _, let at) = runMessage.event else {
                // Commands and task outcomes are small: this is not expected.
                logger.error("a run message cannot be published; it is dropped", metadata: ["run": "\(entry.runID)", "error": "\(message)"])
                return
            }
            // A sub-workflow's output too large to travel to its parent: the
            // parent's step fails with the reason instead of waiting forever.
            logger.error("a sub-workflow's output cannot be sent to its parent run; its step fails", metadata: [
                "run": "\(entry.runID)", "error": "\(message)"])
            let failed = RunMessage(runID: runMessage.runID, event: .childFinished(
                childKey: key, succeeded: false, output: nil, error: "too_large: the sub-workflow's output could not be sent: \(message)", at: at))
            try await engine.apply([], messages: [failed])
            return
        }
        let task = envelope(step)
        logger.error("a step task cannot be published; its step fails", metadata: [
            "task.id": "\(task.id.prefix(300))", "run": "\(step.runID)", "reason": "\(reason.rawValue)", "error": "\(message)"])
        guard task.workflowRunID != nil else { return }
        var event = TaskEvent(kind: .dead, task: task)
        event.deadReason = reason
        event.errorType = reason.rawValue
        event.errorMessage = "the task could not be published: \(message)"
        try await engine.apply([event])
    }

    /// The broker message for a run message: to the events exchange, on
    /// the run's partition key, signed with the event key if there is one.
    func outbound(_ message: RunMessage) throws -> OutboundMessage {
        let body = try message.body()
        var headers: FieldTable = [:]
        if let signer = configuration.eventVerifier { headers[WireHeader.signature] = .string(signer.messageSignature(of: body)) }
        return OutboundMessage(exchange: broker.topology.eventsExchange, routingKey: broker.topology.runMessageRoutingKey(runID: message.runID),
                               body: body, properties: BasicProperties(contentType: "application/json", headers: headers, deliveryMode: 2))
    }

    /// The task message for a step task.
    func envelope(_ task: StepTask) -> TaskEnvelope {
        // A scheduled standalone task has no run.
        let step = task.runID.isEmpty ? nil : (task.index.map { "\(task.stepID)[\($0)]" } ?? task.stepID)
        var envelope = TaskEnvelope(id: task.taskID, name: task.name, queue: task.queue ?? configuration.defaultQueue,
                            arguments: task.arguments.jsonBytes, maxAttempts: task.maxAttempts, retryPolicy: task.retry,
                            workflowRunID: task.runID.isEmpty ? nil : task.runID, workflowStep: step,
                            traceparent: task.traceparent.flatMap(TraceParent.init)?.child(seed: task.taskID).description)
        if let signer = configuration.eventVerifier, !task.runID.isEmpty {
            // Workers with the key run only step tasks signed here.
            envelope.stepSignature = signer.stepSignature(taskID: task.taskID, runID: task.runID, step: step)
        }
        let partitions = leadership.knownStoreCount
        if configuration.eventPacks, !task.runID.isEmpty, partitions > 0 {
            // The run's partition number is a bucket of that partition: its outcomes
            // share packs with the partition's other runs', on the partition's queue.
            envelope.eventPackBucket = Topology.partition(runID: task.runID, of: partitions)
        }
        return envelope
    }

    /// Tells the outbox relay that there may be rows to publish that it
    /// should read from the store (written outside the engine's commits).
    public func outboxChanged() {
        engine.outboxFeed.storeChanged()
        wake.signal()
    }
}
