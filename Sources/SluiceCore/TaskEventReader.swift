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
    private let bytes: UnsafeBufferPointer<UInt8>
    private var i = 0

    private init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// One event object, or nil to fall back.
    static func event(_ bytes: [UInt8]) -> TaskEvent? {
        bytes.withUnsafeBufferPointer { buffer in
            var reader = TaskEventReader(buffer)
            guard let event = reader.object() else { return nil }
            reader.skipSpace()
            return reader.i == buffer.count ? event : nil
        }
    }

    /// An array of event objects (an ``EventPack``), or nil to fall back.
    static func events(_ bytes: [UInt8]) -> [TaskEvent]? {
        bytes.withUnsafeBufferPointer { buffer in
            var reader = TaskEventReader(buffer)
            reader.skipSpace()
            guard reader.take(UInt8(ascii: "[")) else { return nil }
            var events: [TaskEvent] = []
            reader.skipSpace()
            if !reader.take(UInt8(ascii: "]")) {
                while true {
                    guard let event = reader.object() else { return nil }
                    events.append(event)
                    reader.skipSpace()
                    if reader.take(UInt8(ascii: "]")) { break }
                    guard reader.take(UInt8(ascii: ",")) else { return nil }
                }
            }
            reader.skipSpace()
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
        skipSpace()
        guard take(UInt8(ascii: "{")) else { return nil }
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
        skipSpace()
        if take(UInt8(ascii: "}")) { return nil }
        while true {
            skipSpace()
            guard let key = key() else { return nil }
            let bit = UInt32(1) << UInt32(key.rawValue)
            guard seen & bit == 0 else { return nil }
            seen |= bit
            skipSpace()
            guard take(UInt8(ascii: ":")) else { return nil }
            skipSpace()
            switch key {
            case .at: guard let ms = integer() else { return nil }; at = ms
            case .attempt: guard let n = integer() else { return nil }; attempt = n
            case .kind: guard let s = string(), let k = TaskEvent.Kind(rawValue: s) else { return nil }; kind = k
            case .taskID: guard let s = string() else { return nil }; taskID = s
            case .taskName: guard let s = string() else { return nil }; taskName = s
            case .queue: guard let s = string() else { return nil }; queue = s
            case .deadReason:
                guard let s = optionalString() else { return nil }
                if let s { guard let reason = DeadReason(rawValue: s) else { return nil }; deadReason = reason }
            case .durationMilliseconds: guard let d = optionalNumber() else { return nil }; duration = d
            case .waitMilliseconds: guard let d = optionalNumber() else { return nil }; wait = d
            case .progress: guard let d = optionalNumber() else { return nil }; progress = d
            case .nextDelayMilliseconds:
                if takeNull() { break }
                guard let n = integer() else { return nil }
                nextDelay = n
            case .tracked:
                if takeNull() { break }
                if takeWord("true") { tracked = true } else if takeWord("false") { tracked = false } else { return nil }
            case .errorMessage: guard let s = optionalString() else { return nil }; errorMessage = s
            case .errorType: guard let s = optionalString() else { return nil }; errorType = s
            case .progressMessage: guard let s = optionalString() else { return nil }; progressMessage = s
            case .result: guard let s = optionalString() else { return nil }; result = s
            case .signature: guard let s = optionalString() else { return nil }; signature = s
            case .worker: guard let s = optionalString() else { return nil }; worker = s
            case .workflowRunID: guard let s = optionalString() else { return nil }; runID = s
            case .workflowStep: guard let s = optionalString() else { return nil }; step = s
            }
            skipSpace()
            if take(UInt8(ascii: "}")) { break }
            guard take(UInt8(ascii: ",")) else { return nil }
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
        guard take(UInt8(ascii: "\"")) else { return nil }
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
        if takeNull() { return .some(nil) }
        guard let s = string() else { return nil }
        return .some(s)
    }

    private mutating func optionalNumber() -> Double?? {
        if takeNull() { return .some(nil) }
        guard let d = number() else { return nil }
        return .some(d)
    }

    private mutating func string() -> String? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        var start = i
        var ascii = true
        var unescaped: [UInt8]?
        while i < bytes.count {
            let byte = bytes[i]
            if byte == UInt8(ascii: "\"") {
                let tail = UnsafeBufferPointer(rebasing: bytes[start..<i])
                i += 1
                if var out = unescaped {
                    out.append(contentsOf: tail)
                    return String(validating: out, as: UTF8.self)
                }
                return ascii ? String(decoding: tail, as: UTF8.self) : String(validating: tail, as: UTF8.self)
            }
            if byte < 0x20 { return nil }
            if byte >= 0x80 { ascii = false }
            if byte == UInt8(ascii: "\\") {
                // Moved out, not copied: one buffer however many escapes.
                var out = unescaped ?? []
                unescaped = nil
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<i]))
                i += 1
                guard i < bytes.count else { return nil }
                let escape = bytes[i]
                i += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    guard var scalar = hex4() else { return nil }
                    if (0xD800...0xDBFF).contains(scalar) {
                        // A high surrogate must be followed by its low one.
                        guard take(UInt8(ascii: "\\")), take(UInt8(ascii: "u")), let low = hex4(), (0xDC00...0xDFFF).contains(low) else { return nil }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        return nil
                    }
                    guard let unicode = Unicode.Scalar(scalar) else { return nil }
                    UTF8.encode(unicode) { out.append($0) }
                default:
                    return nil
                }
                unescaped = out
                start = i
                continue
            }
            i += 1
        }
        return nil
    }

    private mutating func hex4() -> UInt32? {
        guard i + 4 <= bytes.count else { return nil }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[i]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt32(digit)
            i += 1
        }
        return value
    }

    /// A plain integer: an optional minus and up to 18 digits, no leading zero.
    private mutating func integer() -> Int? {
        let negative = take(UInt8(ascii: "-"))
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

    /// A JSON number (`-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?`),
    /// its value read by the standard library's parser.
    private mutating func number() -> Double? {
        let start = i
        _ = take(UInt8(ascii: "-"))
        guard let first = digits(), first == 1 || bytes[i - first] != UInt8(ascii: "0") else { return nil }
        if take(UInt8(ascii: ".")) { guard digits() != nil else { return nil } }
        if take(UInt8(ascii: "e")) || take(UInt8(ascii: "E")) {
            if !take(UInt8(ascii: "+")) { _ = take(UInt8(ascii: "-")) }
            guard digits() != nil else { return nil }
        }
        guard let value = Double(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)), value.isFinite else {
            return nil
        }
        return value
    }

    /// Skips a run of digits; how many (nil for none).
    private mutating func digits() -> Int? {
        let start = i
        while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) { i += 1 }
        return i > start ? i - start : nil
    }

    // MARK: Bytes

    private mutating func skipSpace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    private mutating func take(_ byte: UInt8) -> Bool {
        guard i < bytes.count, bytes[i] == byte else { return false }
        i += 1
        return true
    }

    private mutating func takeNull() -> Bool { takeWord("null") }

    private mutating func takeWord(_ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard i + count <= bytes.count else { return false }
        let matches = word.withUTF8Buffer { w in (0..<count).allSatisfy { bytes[i + $0] == w[$0] } }
        if matches { i += count }
        return matches
    }
}
