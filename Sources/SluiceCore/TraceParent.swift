/// A W3C Trace Context `traceparent` value:
/// `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`.
///
/// Sluice carries it in the `traceparent` header of every task message. A
/// workflow's step tasks keep the trace id of the request that started the
/// run, each with a span id of its own, so one trace shows the whole workflow.
public struct TraceParent: Sendable, Hashable, CustomStringConvertible {
    public var traceID: String
    public var spanID: String
    public var flags: String

    /// Parses a header value; nil if it is not a valid version-00 value
    /// (all-zero ids are invalid, as the specification says).
    public init?(_ text: String) {
        // Lower-case ASCII hex only; version 00 has exactly four fields
        // (a later version may append more, which a 00 reader ignores).
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        func isHex(_ s: Substring) -> Bool { s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) } }
        guard parts.count >= 4, parts[0].count == 2, isHex(parts[0]), parts[0] != "ff",
              parts[0] != "00" || parts.count == 4,
              parts[1].count == 32, parts[2].count == 16, parts[3].count == 2,
              isHex(parts[1]), isHex(parts[2]), isHex(parts[3]),
              parts[1].contains(where: { $0 != "0" }), parts[2].contains(where: { $0 != "0" }) else { return nil }
        traceID = String(parts[1])
        spanID = String(parts[2])
        flags = String(parts[3])
    }

    public init(traceID: String, spanID: String, flags: String = "01") {
        self.traceID = traceID
        self.spanID = spanID
        self.flags = flags
    }

    /// A new trace with a random id.
    public static func random() -> TraceParent {
        var g = SystemRandomNumberGenerator()
        return TraceParent(traceID: hex(g.next(), g.next()), spanID: hex(g.next() | 1))
    }

    /// The same trace, with a span id derived from `seed`: stable, so that a
    /// message published twice (an outbox retry) carries the same value.
    public func child(seed: String) -> TraceParent {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in (spanID + seed).utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return TraceParent(traceID: traceID, spanID: Self.hex(h == 0 ? 1 : h), flags: flags)
    }

    public var description: String { "00-\(traceID)-\(spanID)-\(flags)" }

    private static func hex(_ words: UInt64...) -> String {
        words.map { w in
            let s = String(w, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }.joined()
    }
}

extension TraceParent {
    /// The trace of the task running now (set by the worker around a
    /// handler): tasks enqueued from inside a handler join it.
    @TaskLocal public static var current: TraceParent?
}
