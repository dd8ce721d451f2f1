import Foundation

/// Plain-text tables and sparklines for the monitoring commands.
public enum Rendering {
    /// ANSI colours, or nothing when `enabled` is false (not a terminal, NO_COLOR).
    public struct Palette: Sendable {
        public var enabled: Bool
        public init(enabled: Bool) { self.enabled = enabled }
        func wrap(_ code: String, _ s: String) -> String { enabled ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }
        public func bold(_ s: String) -> String { wrap("1", s) }
        public func dim(_ s: String) -> String { wrap("2", s) }
        public func red(_ s: String) -> String { wrap("31", s) }
        public func green(_ s: String) -> String { wrap("32", s) }
        public func yellow(_ s: String) -> String { wrap("33", s) }
        public func cyan(_ s: String) -> String { wrap("36", s) }

        /// Colour on when standard output is a terminal and NO_COLOR is unset.
        public static var automatic: Palette {
            Palette(enabled: isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil)
        }
    }

    /// Lays out rows under a header; `right` columns are right-aligned.
    /// Cells may contain ANSI colour codes (not counted in widths).
    public static func table(_ header: [String], _ rows: [[String]], right: Set<Int> = [], palette: Palette) -> [String] {
        var widths = header.map { visibleWidth($0) }
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], visibleWidth(cell)) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                let pad = String(repeating: " ", count: max(0, widths[i] - visibleWidth(cell)))
                return right.contains(i) ? pad + cell : cell + pad
            }.joined(separator: "  ").trimmingTrailingSpaces()
        }
        return [palette.bold(line(header))] + rows.map(line)
    }

    /// Width on screen: characters outside ANSI escape sequences.
    public static func visibleWidth(_ s: String) -> Int {
        var width = 0, inEscape = false
        for ch in s.unicodeScalars {
            if inEscape { if ch == "m" { inEscape = false }; continue }
            if ch == "\u{1B}" { inEscape = true; continue }
            width += 1
        }
        return width
    }

    /// A sparkline of `values` (the last `width` of them), scaled to their maximum.
    public static func sparkline(_ values: [Double], width: Int = 20) -> String {
        let bars: [Character] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]
        let recent = values.suffix(width)
        let top = recent.max() ?? 0
        guard top > 0 else { return String(repeating: bars[0], count: recent.count) }
        return String(recent.map { bars[min(bars.count - 1, Int(($0 / top) * Double(bars.count - 1) + 0.5))] })
    }

    /// `1.2k/s`-style rate, or `-` when unknown.
    public static func rate(_ value: Double?) -> String {
        guard let value else { return "-" }
        if value >= 10_000 { return String(format: "%.0fk/s", value / 1000) }
        if value >= 1000 { return String(format: "%.1fk/s", value / 1000) }
        if value >= 10 { return String(format: "%.0f/s", value) }
        return String(format: "%.1f/s", value)
    }

    /// `850ms`, `12s`, `4m10s`, `2h5m`, or `-`.
    public static func duration(milliseconds: Double?) -> String {
        guard let ms = milliseconds, ms.isFinite, ms >= 0 else { return "-" }
        if ms < 1000 { return "\(Int(ms))ms" }
        let s = Int(ms / 1000)
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(s % 60)s" }
        return "\(s / 3600)h\((s % 3600) / 60)m"
    }

    /// The oldest ready task's age (`0s`, `12s`, `4m10s`), `≥` before a lower
    /// bound (the queue watched for less time than its backlog is old), or `-`.
    public static func age(_ row: QueueRow) -> String {
        guard let seconds = row.oldestAgeSeconds else { return "-" }
        let text = seconds < 1 ? "0s" : duration(milliseconds: seconds * 1000)
        return row.oldestAgeBasis == .watching ? "≥" + text : text
    }

    public static func count(_ value: Int?) -> String { value.map(String.init) ?? "-" }

    /// A quorum queue's members online of all (`3/3`), red and flagged when
    /// one is offline; `-` for a queue that has none (or without the management API).
    public static func replicas(_ row: QueueRow, palette: Palette) -> String {
        guard let members = row.members, let online = row.online else { return "-" }
        let text = "\(online)/\(members)"
        return row.underReplicated ? palette.red(text + " !") : text
    }

    /// A node name without its host part when it is the local one
    /// (`rabbit@localhost` → `rabbit`), as a short column.
    public static func node(_ name: String) -> String {
        name.hasSuffix("@localhost") ? String(name.dropLast("@localhost".count)) : name
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var s = self
        while s.hasSuffix(" ") { s.removeLast() }
        return s
    }
}
