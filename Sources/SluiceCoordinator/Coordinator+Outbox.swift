import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SluiceCore
import SluiceWire
import SluiceWorkflow
import Synchronization

/// The outbox relay: step tasks published after the commit that decided them.
extension Coordinator {
    func relayOutbox() async throws {
        var prepared: Set<String> = []
        let feed = engine.outboxFeed
        // What was published lately: a row read from the store and handed
        // over by the feed too (the two race right after a commit) goes once.
        var recent = RecentIDs(capacity: 65_536)
        // The store holds rows of earlier leaders, of schedules, and any the feed dropped.
        var readStore = true
        feed.clear()
        while true {
            if feed.takeStoreChanged() { readStore = true }
            var entries: [OutboxEntry]
            if readStore {
                // The store first, oldest first, until it holds no more than
                // a batch: it has every row the feed has, and those it alone
                // has would otherwise wait behind a feed that never runs dry.
                entries = try await store.unsentOutbox(limit: configuration.outboxBatch)
                readStore = entries.count == configuration.outboxBatch
            } else {
                let taken = feed.take(max: configuration.outboxBatch)
                entries = taken.entries
                if taken.overflowed { readStore = true }
            }
            entries.removeAll { recent.contains($0.id) }
            if entries.isEmpty {
                await wake.wait(upTo: configuration.pollInterval)
                // Nothing handed over after a wait (the poll interval
                // passed): look in the store, in case.
                if feed.isEmpty { readStore = true }
                continue
            }
            let queues = Set(entries.map { $0.task.queue ?? configuration.defaultQueue }).subtracting(prepared)
            if !queues.isEmpty {
                try await broker.prepare(queues: Array(queues))
                try await broker.watchDeadLetters(of: Array(queues))
                prepared.formUnion(queues)
            }
            // A task that can never be published (over an AMQP limit) fails
            // its step instead of holding its row, and the rows behind it, forever.
            // Each envelope built once (with a key it carries an HMAC).
            var sendable = entries.map { entry in
                let task = envelope(entry.task)
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
            let messages = sendable.map(\.message)
            let results = messages.isEmpty ? [] : try await broker.publish(messages)
            var sent: [Int64] = []
            var transientFailures = 0
            for ((entry, _, _), result) in zip(sendable, results) {
                switch result {
                case .success: sent.append(entry.id)
                case .failure(let error) where PublishFailure.isOverLimit(error):
                    refused.append((entry, .tooLarge, "\(error)"))
                case .failure(let error):
                    transientFailures += 1
                    logger.warning("a step task was not confirmed; it will be published again", metadata: [
                        "task.id": "\(entry.task.taskID)", "error": "\(error)"])
                }
            }
            for (entry, reason, message) in refused {
                try await failUnpublishable(entry, reason: reason, message: message)
                sent.append(entry.id)
            }
            for id in sent { recent.insert(id) }
            // With the next commit of events: no transaction of its own.
            try await engine.markSent(sent)
            if transientFailures > 0 {
                // The unconfirmed rows are still in the store.
                readStore = true
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Fails the step of a task that cannot be published, as if a worker had
    /// dead-lettered it with `reason`; the run then goes on by its rules.
    func failUnpublishable(_ entry: OutboxEntry, reason: DeadReason, message: String) async throws {
        let task = envelope(entry.task)
        logger.error("a step task cannot be published; its step fails", metadata: [
            "task.id": "\(task.id.prefix(300))", "run": "\(entry.task.runID)", "reason": "\(reason.rawValue)", "error": "\(message)"])
        guard task.workflowRunID != nil else { return }
        var event = TaskEvent(kind: .dead, task: task)
        event.deadReason = reason
        event.errorType = reason.rawValue
        event.errorMessage = "the task could not be published: \(message)"
        try await engine.apply([event])
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
        return envelope
    }

    /// Tells the outbox relay that there may be rows to publish that it
    /// should read from the store (written outside the engine's commits).
    public func outboxChanged() {
        engine.outboxFeed.storeChanged()
        wake.signal()
    }
}
