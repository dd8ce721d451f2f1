import Foundation
import SluiceCore
import SluiceWorker

/// Tasks every worker can run, for demos and tests.
enum BuiltinTasks {
    static func registry() -> HandlerRegistry {
        var r = HandlerRegistry()
        r.register("sluice.echo") { $0.arguments }
        r.register("sluice.sleep") { context in
            let seconds = (try? JSONSerialization.jsonObject(with: Data(context.arguments)) as? [String: Any])?["seconds"] as? Double ?? 1
            guard seconds.isFinite, seconds >= 0, seconds <= 86_400 else {
                throw TaskFailure.permanent("seconds must be from 0 to 86400", kind: "bad_arguments")
            }
            // In slices, reporting progress (sent at most once a second).
            let start = ContinuousClock.now
            while true {
                let slept = (ContinuousClock.now - start).timeInterval
                if slept >= seconds { break }
                context.progress(slept / seconds, message: String(format: "slept %.1f s of %.1f s", slept, seconds))
                try await Task.sleep(for: .milliseconds(Int64(min(0.25, seconds - slept) * 1000)))
            }
            context.progress(1, message: String(format: "slept %.1f s", seconds))
            return Array(#"{"slept":\#(seconds)}"#.utf8)
        }
        r.register("sluice.fail") { context in
            let object = (try? JSONSerialization.jsonObject(with: Data(context.arguments))) as? [String: Any]
            let message = object?["message"] as? String ?? "sluice.fail failed on purpose"
            if let times = object?["times"] as? Int, context.attempt > times {
                return Array(#"{"attempt":\#(context.attempt)}"#.utf8)
            }
            if object?["permanent"] as? Bool == true { throw TaskFailure.permanent(message) }
            throw TaskFailure(kind: "sluice.fail", message)
        }
        r.register("sluice.crash") { _ in
            // Simulates a task that kills its worker (segfault, OOM kill...).
            exit(70)
        }
        return r
    }
}
