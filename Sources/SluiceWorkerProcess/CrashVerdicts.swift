import SluiceWire
public import SluiceCore
public import SluiceWorker
import Synchronization

/// In a supervised worker process: what the supervisor has concluded about
/// tasks that were running when a worker process died.
///
/// The supervisor writes one line per verdict on the child's standard input
/// (`suspect <hex id>`, `poison <hex id>`, `clear <hex id>`, and `ready` once
/// the verdicts it had at the child's start are sent); the child decides each task's
/// admission from them. Ids travel hex-encoded, so that no id can break the
/// line protocol.
public final class CrashVerdicts: Sendable {
    public static let shared = CrashVerdicts()

    private struct State {
        var suspects: Set<String> = []
        var poisons: Set<String> = []
    }

    private let state = Mutex(State())

    /// `.deadLetter` for a task that crashed its process again and again
    /// while running alone; `.isolate` for one that was running when a
    /// process died (unless this is the process that runs those).
    public func admission(_ task: TaskEnvelope, inIsolation: Bool, crashLimit: Int) -> Worker.Admission {
        let (poison, suspect) = state.withLock { ($0.poisons.contains(task.id), $0.suspects.contains(task.id)) }
        if poison {
            // Told back, so that the supervisor forgets it: a later task may reuse the id.
            SupervisedWorker.report("poisoned", taskID: task.id)
            return .deadLetter(.crashedWorker, "the task crashed its worker process \(crashLimit) times while it ran alone")
        }
        return suspect && !inIsolation ? .isolate : .run
    }

    /// Applies one line from the supervisor; true for `ready`.
    @discardableResult
    public func apply(line: String) -> Bool {
        let parts = line.split(separator: " ", maxSplits: 1)
        if parts.first == "ready" { return true }
        guard parts.count == 2, let id = SupervisorLine.decode(String(parts[1])) else { return false }
        state.withLock {
            switch parts[0] {
            case "suspect": $0.suspects.insert(id)
            case "poison": $0.poisons.insert(id)
            case "clear":
                $0.suspects.remove(id)
                $0.poisons.remove(id)
            default: break
            }
        }
        return false
    }
}

/// The line protocol between the supervisor and its worker processes.
public enum SupervisorLine {
    public static func encode(_ id: String) -> String { Hex.encode(id.utf8) }

    public static func decode(_ hex: String) -> String? {
        Hex.decode(hex).flatMap { String(validating: $0, as: UTF8.self) }
    }
}
