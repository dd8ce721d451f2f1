import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SluiceCore
import SluiceWorkflow
import Synchronization
import SluiceAPI

/// Durable timers and cron schedules.
extension Coordinator {
    func fireTimers() async throws {
        var orphans: Set<String> = []
        while true {
            let due = try await store.dueTimers(now: Date(), limit: 200).filter { !orphans.contains($0.id) }
            var fired = 0
            for timer in due {
                do {
                    if try await engine.fire(timer) {
                        fired += 1
                    } else {
                        // Its run is gone (a hand-edited store): leave it, and do not spin on it.
                        orphans.insert(timer.id)
                        logger.warning("a timer of an unknown run is ignored", metadata: ["timer": "\(timer.id)", "run": "\(timer.runID)"])
                    }
                } catch is CancellationError {
                    throw CancellationError()
                } catch where Self.isLeaseLoss(error) {
                    throw error
                } catch {
                    logger.error("a timer could not fire; it will be tried again", metadata: ["timer": "\(timer.id)", "error": "\(error)"])
                }
            }
            if fired > 0 {
                // The commits rang the outbox relay themselves.
                continue
            }
            if !due.isEmpty {
                try await Task.sleep(for: configuration.pollInterval)
                continue
            }
            var wait = configuration.pollInterval
            if orphans.isEmpty, let next = try await store.nextTimerDue() {
                let until = next.timeIntervalSinceNow
                if until < wait.timeInterval {
                    wait = .milliseconds(max(1, Int(until * 1000)))
                }
            }
            try await Task.sleep(for: wait)
        }
    }

    func fireSchedules() async throws {
        while true {
            let now = Date()
            var soonest = now.addingTimeInterval(Double(configuration.pollInterval.components.seconds) + 0.25)
            for record in try await store.schedules() {
                guard record.nextFireAt <= now else {
                    soonest = min(soonest, record.nextFireAt)
                    continue
                }
                let spec: ScheduleSpec
                do {
                    spec = try StoreCoding.decode(ScheduleSpec.self, record.spec)
                } catch {
                    logger.error("a stored schedule cannot be read; it is skipped", metadata: ["schedule": "\(record.id)", "error": "\(error)"])
                    continue
                }
                do {
                    // The next time after now: missed times in between are not fired again.
                    let next = try spec.nextFire(after: max(now, record.nextFireAt))
                    let late = now.timeIntervalSince(record.nextFireAt)
                    if spec.misfire == .skip && late > 60 {
                        logger.warning("a schedule fire was missed and skipped", metadata: ["schedule": "\(spec.id)", "late": "\(Int(late)) s"])
                        _ = try await store.fireSchedule(id: spec.id, expected: record.nextFireAt, next: next, changes: [], publish: [])
                    } else if try await engine.fire(schedule: spec, expected: record.nextFireAt, next: next,
                                                    defaultQueue: configuration.defaultQueue) {
                        logger.info("schedule fired", metadata: ["schedule": "\(spec.id)", "next": "\(next)"])
                        outboxChanged()
                    }
                } catch where Self.isLeaseLoss(error) || error is CancellationError {
                    throw error
                } catch {
                    logger.error("a schedule could not fire", metadata: ["schedule": "\(spec.id)", "error": "\(error)"])
                }
            }
            let wait = max(0.01, soonest.timeIntervalSinceNow)
            try await Task.sleep(for: .milliseconds(Int(wait * 1000)))
        }
    }
}
