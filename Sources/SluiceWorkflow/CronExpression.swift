public import Foundation

/// A classic 5-field cron expression: `minute hour day-of-month month day-of-week`.
///
/// Each field takes `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n` and
/// `a-b/n`; months and weekdays also take names (`jan`, `mon`); Sunday is 0
/// or 7. As in Vixie cron, when both day fields are restricted a day matches
/// if either does. Times are computed in a time zone: in a spring-forward gap
/// the missing local times do not occur; in a fall-back overlap a time fires
/// once, at its first occurrence.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    public let source: String
    let minutes: Set<Int>
    let hours: Set<Int>
    let daysOfMonth: Set<Int>
    let months: Set<Int>
    let daysOfWeek: Set<Int>
    let dayOfMonthRestricted: Bool
    let dayOfWeekRestricted: Bool

    public var description: String { source }

    public init(_ source: String) throws(WorkflowError) {
        let fields = source.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard fields.count == 5 else {
            throw WorkflowError(.invalidExpression, "cron '\(source)' needs 5 fields (minute hour day-of-month month day-of-week), has \(fields.count)")
        }
        self.source = source
        minutes = try Self.field(fields[0], 0...59, "minute", source)
        hours = try Self.field(fields[1], 0...23, "hour", source)
        daysOfMonth = try Self.field(fields[2], 1...31, "day of month", source)
        months = try Self.field(fields[3], 1...12, "month", source,
                                names: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], firstName: 1)
        let weekdays = try Self.field(fields[4], 0...7, "day of week", source,
                                      names: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"], firstName: 0)
        daysOfWeek = Set(weekdays.map { $0 == 7 ? 0 : $0 })
        dayOfMonthRestricted = !fields[2].hasPrefix("*")
        dayOfWeekRestricted = !fields[4].hasPrefix("*")
    }

    private static func field(_ text: String, _ range: ClosedRange<Int>, _ what: String, _ source: String,
                              names: [String] = [], firstName: Int = 0) throws(WorkflowError) -> Set<Int> {
        func fail(_ why: String) -> WorkflowError { WorkflowError(.invalidExpression, "cron '\(source)': \(what) '\(text)': \(why)") }
        func number(_ s: Substring) throws(WorkflowError) -> Int {
            if let n = Int(s) { return n }
            if let i = names.firstIndex(of: s.lowercased()) { return i + firstName }
            throw fail("'\(s)' is not a number\(names.isEmpty ? "" : " or a name")")
        }
        var out: Set<Int> = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard !part.isEmpty else { throw fail("an empty list item") }
            let pieces = part.split(separator: "/", omittingEmptySubsequences: false)
            guard pieces.count <= 2 else { throw fail("more than one '/'") }
            var step = 1
            if pieces.count == 2 {
                guard let s = Int(pieces[1]), s >= 1 else { throw fail("a step must be a number of 1 or more") }
                step = s
            }
            let base = pieces[0]
            var low: Int, high: Int
            if base == "*" {
                (low, high) = (range.lowerBound, range.upperBound)
            } else if let dash = base.firstIndex(of: "-") {
                low = try number(base[..<dash])
                high = try number(base[base.index(after: dash)...])
                guard low <= high else { throw fail("a range must go upwards") }
            } else {
                low = try number(base)
                high = pieces.count == 2 ? range.upperBound : low
            }
            guard range.contains(low), range.contains(high) else { throw fail("out of range \(range.lowerBound)-\(range.upperBound)") }
            out.formUnion(stride(from: low, through: high, by: step))
        }
        return out
    }

    /// The first matching time strictly after `date`, in `timeZone`; nil if
    /// none comes within eight years (an impossible date such as 30 February).
    public func next(after date: Date, in timeZone: TimeZone = TimeZone(identifier: "UTC")!) -> Date? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        // Start at the next whole minute.
        let start = Date(timeIntervalSince1970: (floor(date.timeIntervalSince1970 / 60) + 1) * 60)
        var day = calendar.startOfDay(for: start)
        let sortedHours = hours.sorted(), sortedMinutes = minutes.sorted()
        for _ in 0..<(366 * 8) {
            let c = calendar.dateComponents([.year, .month, .day, .weekday], from: day)
            if let month = c.month, let dom = c.day, let weekday = c.weekday, months.contains(month), matchesDay(dom, weekday - 1) {
                for hour in sortedHours {
                    for minute in sortedMinutes {
                        var wanted = DateComponents()
                        wanted.year = c.year
                        wanted.month = month
                        wanted.day = dom
                        wanted.hour = hour
                        wanted.minute = minute
                        guard let candidate = calendar.date(from: wanted) else { continue }
                        // A local time skipped by a daylight-saving change comes back shifted: not a match.
                        let back = calendar.dateComponents([.hour, .minute, .day], from: candidate)
                        guard back.hour == hour, back.minute == minute, back.day == dom else { continue }
                        if candidate >= start { return candidate }
                    }
                }
            }
            guard let nextDay = calendar.date(byAdding: .day, value: 1, to: day) else { return nil }
            day = nextDay
        }
        return nil
    }

    private func matchesDay(_ dom: Int, _ weekday: Int) -> Bool {
        let domOK = daysOfMonth.contains(dom), dowOK = daysOfWeek.contains(weekday)
        if dayOfMonthRestricted && dayOfWeekRestricted { return domOK || dowOK }
        return domOK && dowOK
    }
}
