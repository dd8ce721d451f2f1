#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Reads the JSON of events as workers write them (``TaskEvent/jsonBytes()``)
/// without Foundation's `JSONDecoder`, which was the coordinator's largest
/// cost per event after the store. Strict: anything it does not expect (an
/// unknown or repeated key, a number that is not plain, a bad escape,
/// invalid UTF-8) makes it give up and return nil, and the caller decodes
/// with `JSONDecoder`, so the result is always what that decoder gives.
struct TaskEventReader {
    private var scan: JSONScanner
    private var i: Int {
        get { scan.i }
        set { scan.i = newValue }
    }
    private var bytes: UnsafeBufferPointer<UInt8> { scan.bytes }

    private init(_ bytes: UnsafeBufferPointer<UInt8>) { scan = JSONScanner(bytes) }

    /// One event object, or nil to fall back.
    static func event(_ bytes: [UInt8]) -> TaskEvent? {
        bytes.withUnsafeBufferPointer { buffer in
            var reader = TaskEventReader(buffer)
            guard let event = reader.object() else { return nil }
            reader.scan.skipSpace()
            return reader.i == buffer.count ? event : nil
        }
    }

    /// An array of event objects (an ``EventPack``), or nil to fall back.
    static func events(_ bytes: [UInt8]) -> [TaskEvent]? {
        bytes.withUnsafeBufferPointer { buffer in
            var reader = TaskEventReader(buffer)
            reader.scan.skipSpace()
            guard reader.scan.take(UInt8(ascii: "[")) else { return nil }
            var events: [TaskEvent] = []
            reader.scan.skipSpace()
            if !reader.scan.take(UInt8(ascii: "]")) {
                while true {
                    guard let event = reader.object() else { return nil }
                    events.append(event)
                    reader.scan.skipSpace()
                    if reader.scan.take(UInt8(ascii: "]")) { break }
                    guard reader.scan.take(UInt8(ascii: ",")) else { return nil }
                }
            }
            reader.scan.skipSpace()
            return reader.i == buffer.count ? events : nil
        }
    }

    // MARK: The object

    private enum Key: Int, CaseIterable {
        case at, attempt, deadReason, durationMilliseconds, errorMessage, errorType, kind, nextDelayMilliseconds,
             progress, progressMessage, queue, result, signature, taskID, taskName, tracked, waitMilliseconds,
             worker, workflowRunID, workflowStep

        /// By name, compared as bytes (no String per key).
        static let names: [(Key, [UInt8])] = allCases.map { ($0, Array("\($0)".utf8)) }
    }

    private mutating func object() -> TaskEvent? {
        scan.skipSpace()
        guard scan.take(UInt8(ascii: "{")) else { return nil }
        var kind: TaskEvent.Kind?
        var taskID: String?, taskName: String?, queue: String?
        var attempt: Int?
        var at: Int?
        var deadReason: DeadReason?
        var duration: Double?, wait: Double?, progress: Double?
        var nextDelay: Int?
        var tracked: Bool?
        var errorMessage: String?, errorType: String?, progressMessage: String?, result: String?, signature: String?
        var worker: String?, runID: String?, step: String?
        var seen: UInt32 = 0
        scan.skipSpace()
        if scan.take(UInt8(ascii: "}")) { return nil }
        while true {
            scan.skipSpace()
            guard let key = key() else { return nil }
            let bit = UInt32(1) << UInt32(key.rawValue)
            guard seen & bit == 0 else { return nil }
            seen |= bit
            scan.skipSpace()
            guard scan.take(UInt8(ascii: ":")) else { return nil }
            scan.skipSpace()
            switch key {
            case .at: guard let ms = integer() else { return nil }; at = ms
            case .attempt: guard let n = integer() else { return nil }; attempt = n
            case .kind: guard let s = scan.string(), let k = TaskEvent.Kind(rawValue: s) else { return nil }; kind = k
            case .taskID: guard let s = scan.string() else { return nil }; taskID = s
            case .taskName: guard let s = scan.string() else { return nil }; taskName = s
            case .queue: guard let s = scan.string() else { return nil }; queue = s
            case .deadReason:
                guard let s = optionalString() else { return nil }
                if let s { guard let reason = DeadReason(rawValue: s) else { return nil }; deadReason = reason }
            case .durationMilliseconds: guard let d = optionalNumber() else { return nil }; duration = d
            case .waitMilliseconds: guard let d = optionalNumber() else { return nil }; wait = d
            case .progress: guard let d = optionalNumber() else { return nil }; progress = d
            case .nextDelayMilliseconds:
                if scan.takeWord("null") { break }
                guard let n = integer() else { return nil }
                nextDelay = n
            case .tracked:
                if scan.takeWord("null") { break }
                if scan.takeWord("true") { tracked = true } else if scan.takeWord("false") { tracked = false } else { return nil }
            case .errorMessage: guard let s = optionalString() else { return nil }; errorMessage = s
            case .errorType: guard let s = optionalString() else { return nil }; errorType = s
            case .progressMessage: guard let s = optionalString() else { return nil }; progressMessage = s
            case .result: guard let s = optionalString() else { return nil }; result = s
            case .signature: guard let s = optionalString() else { return nil }; signature = s
            case .worker: guard let s = optionalString() else { return nil }; worker = s
            case .workflowRunID: guard let s = optionalString() else { return nil }; runID = s
            case .workflowStep: guard let s = optionalString() else { return nil }; step = s
            }
            scan.skipSpace()
            if scan.take(UInt8(ascii: "}")) { break }
            guard scan.take(UInt8(ascii: ",")) else { return nil }
        }
        guard let kind, let taskID, let taskName, let queue, let attempt, let at else { return nil }
        var event = TaskEvent(kind: kind, taskID: taskID, taskName: taskName, queue: queue, attempt: attempt,
                              at: Date(epochMilliseconds: Int64(at)))
        event.deadReason = deadReason
        event.durationMilliseconds = duration
        event.waitMilliseconds = wait
        event.progress = progress
        event.nextDelayMilliseconds = nextDelay
        event.tracked = tracked
        event.errorMessage = errorMessage
        event.errorType = errorType
        event.progressMessage = progressMessage
        event.result = result
        event.signature = signature
        event.worker = worker
        event.workflowRunID = runID
        event.workflowStep = step
        return event
    }

    private mutating func key() -> Key? {
        guard scan.take(UInt8(ascii: "\"")) else { return nil }
        let start = i
        while i < bytes.count, bytes[i] != UInt8(ascii: "\"") {
            if bytes[i] == UInt8(ascii: "\\") { return nil }
            i += 1
        }
        guard i < bytes.count else { return nil }
        let name = UnsafeBufferPointer(rebasing: bytes[start..<i])
        i += 1
        for (key, bytes) in Key.names where bytes.count == name.count && bytes.elementsEqual(name) { return key }
        return nil
    }

    // MARK: Values

    /// `null` → .some(nil); a string → .some(s); anything else → nil.
    private mutating func optionalString() -> String?? {
        if scan.takeWord("null") { return .some(nil) }
        guard let s = scan.string() else { return nil }
        return .some(s)
    }

    private mutating func optionalNumber() -> Double?? {
        if scan.takeWord("null") { return .some(nil) }
        guard let d = scan.number() else { return nil }
        return .some(d)
    }

    /// A plain integer: an optional minus and up to 18 digits, no leading zero.
    private mutating func integer() -> Int? {
        let negative = scan.take(UInt8(ascii: "-"))
        let start = i
        var value = 0
        while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) {
            // Checked before the digit is added: 19 digits could overflow (a trap, not an error).
            guard i - start < 18 else { return nil }
            value = value * 10 + Int(bytes[i] - UInt8(ascii: "0"))
            i += 1
        }
        let digits = i - start
        guard digits >= 1, !(digits > 1 && bytes[start] == UInt8(ascii: "0")) else { return nil }
        // A fraction or exponent: not an integer this reader takes.
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") || bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") { return nil }
        return negative ? -value : value
    }
}
