#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
public import SluiceWorker

/// Tasks every worker can run, for demos and tests.
public enum BuiltinTasks {
    /// `sluice.sleep`'s arguments: `{"seconds": 2}` (1 when missing or not a number).
    private struct Sleep: Decodable {
        var seconds: Double?
    }

    /// `sluice.fail`'s arguments; a field of the wrong type counts as missing.
    private struct Fail: Decodable {
        var message: String?
        var times: Int?
        var permanent: Bool?

        enum CodingKeys: String, CodingKey { case message, times, permanent }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            message = try? c.decodeIfPresent(String.self, forKey: .message)
            times = try? c.decodeIfPresent(Int.self, forKey: .times)
            permanent = try? c.decodeIfPresent(Bool.self, forKey: .permanent)
        }
    }

    public static func registry() -> HandlerRegistry {
        var r = HandlerRegistry()
        r.register("sluice.echo") { $0.arguments }
        r.register("sluice.sleep") { context in
            let seconds = (try? JSONDecoder().decode(Sleep.self, from: Data(context.arguments)))?.seconds ?? 1
            guard seconds.isFinite, seconds >= 0, seconds <= 86_400 else {
                throw TaskFailure.permanent("seconds must be from 0 to 86400", kind: "bad_arguments")
            }
            // In slices, reporting progress (sent at most once a second).
            let start = ContinuousClock.now
            while true {
                let slept = (ContinuousClock.now - start).timeInterval
                if slept >= seconds { break }
                context.progress(slept / seconds, message: "slept \(oneDecimal(slept)) s of \(oneDecimal(seconds)) s")
                try await Task.sleep(for: .milliseconds(Int64(min(0.25, seconds - slept) * 1000)))
            }
            context.progress(1, message: "slept \(oneDecimal(seconds)) s")
            return Array(#"{"slept":\#(seconds)}"#.utf8)
        }
        r.register("sluice.fail") { context in
            let arguments = try? JSONDecoder().decode(Fail.self, from: Data(context.arguments))
            let message = arguments?.message ?? "sluice.fail failed on purpose"
            if let times = arguments?.times, context.attempt > times {
                return Array(#"{"attempt":\#(context.attempt)}"#.utf8)
            }
            if arguments?.permanent == true { throw TaskFailure.permanent(message) }
            throw TaskFailure(kind: "sluice.fail", message)
        }
        r.register("sluice.crash") { _ in
            // Simulates a task that kills its worker (segfault, OOM kill...).
            exit(70)
        }
        return r
    }

    /// `x` (not negative) with one decimal, as `%.1f` writes it.
    static func oneDecimal(_ x: Double) -> String {
        let tenths = Int((x * 10).rounded(.toNearestOrEven))
        return "\(tenths / 10).\(tenths % 10)"
    }
}
