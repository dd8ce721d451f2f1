import SluiceCore

/// Durations in definitions: `"250ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`, or
/// combinations such as `"1h30m"`; a bare number means seconds.
public enum WorkflowDuration {
    /// Milliseconds in `text`.
    public static func milliseconds(_ text: String) throws(WorkflowError) -> Int {
        do { return try DurationText.milliseconds(text) } catch { throw WorkflowError(.invalidDuration, error.message) }
    }

    /// The shortest text for a number of milliseconds (`90000` → `"1m30s"`).
    public static func text(milliseconds: Int) -> String { DurationText.text(milliseconds: milliseconds) }
}
