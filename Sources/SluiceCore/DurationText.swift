/// Durations written as text, as workflow files and command lines write
/// them: `"250ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`, combinations such as
/// `"1h30m"`, or a bare number of seconds.
public enum DurationText {
    /// Milliseconds in `text`.
    public static func milliseconds(_ text: String) throws(SluiceError) -> Int {
        let s = text.trimmedOfSpaces
        if let seconds = Double(s) {
            guard seconds >= 0, seconds < 1e10 else { throw SluiceError(.invalidArgument, "'\(text)' is out of range") }
            return Int((seconds * 1000).rounded())
        }
        let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        var total = 0.0
        var rest = Substring(s)
        guard !rest.isEmpty else { throw SluiceError(.invalidArgument, "empty duration") }
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isNumber || $0 == "." }
            guard let value = Double(digits) else {
                throw SluiceError(.invalidArgument, "'\(text)' is not a duration (like 250ms, 30s, 5m, 2h, 1d)")
            }
            rest = rest.dropFirst(digits.count)
            guard let (unit, factor) = units.first(where: { rest.hasPrefix($0.0) && !(($0.0 == "m") && rest.hasPrefix("ms")) }) else {
                throw SluiceError(.invalidArgument, "'\(text)' is not a duration (like 250ms, 30s, 5m, 2h, 1d)")
            }
            rest = rest.dropFirst(unit.count)
            total += value * factor
        }
        guard total < 1e13 else { throw SluiceError(.invalidArgument, "'\(text)' is out of range") }
        return Int(total.rounded())
    }

    /// The shortest text for a number of milliseconds (`90000` → `"1m30s"`).
    public static func text(milliseconds: Int) -> String {
        if milliseconds == 0 { return "0s" }
        var rest = milliseconds
        var out = ""
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] where rest >= size {
            out += "\(rest / size)\(unit)"
            rest %= size
        }
        return out
    }
}

extension String {
    /// Without leading and trailing spaces and tabs (what Foundation's
    /// `trimmingCharacters(in: .whitespaces)` drops, here without Foundation).
    public var trimmedOfSpaces: String {
        let isSpace: (Character) -> Bool = { $0 == "\t" || $0.unicodeScalars.allSatisfy { $0.properties.generalCategory == .spaceSeparator } }
        return String(drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }

    /// Without leading and trailing whitespace and line ends (Foundation's
    /// `trimmingCharacters(in: .whitespacesAndNewlines)`).
    public var trimmedOfWhitespace: String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
