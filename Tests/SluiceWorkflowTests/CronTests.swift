import Foundation
import SluiceWorkflow
import Testing

@Suite("Cron expressions")
struct CronTests {
    let utc = TimeZone(identifier: "UTC")!
    func date(_ text: String) -> Date { ISO8601DateFormatter().date(from: text)! }

    @Test("next fire times", arguments: [
        ("* * * * *", "2026-11-27T10:15:30Z", "2026-11-27T10:16:00Z"),
        ("*/15 * * * *", "2026-11-27T10:15:00Z", "2026-11-27T10:30:00Z"),
        ("0 3 * * *", "2026-11-27T10:15:00Z", "2026-11-28T03:00:00Z"),
        ("30 9 * * mon-fri", "2026-11-27T10:00:00Z", "2026-11-30T09:30:00Z"),  // Friday after 9:30 → Monday
        ("0 0 1 jan *", "2026-11-27T00:00:00Z", "2027-01-01T00:00:00Z"),
        ("0 12 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T12:00:00Z"),
        ("0 0 13 * 5", "2026-11-27T12:00:00Z", "2026-12-04T00:00:00Z"),    // day 13 or a Friday (either)
        ("5,10-12/2 1 * * 7", "2026-11-27T00:00:00Z", "2026-11-29T01:05:00Z"),
    ])
    func next(expression: String, after: String, expected: String) throws {
        #expect(try CronExpression(expression).next(after: date(after), in: utc) == date(expected))
    }

    @Test("in a time zone, across a daylight-saving change")
    func timeZones() throws {
        let paris = TimeZone(identifier: "Europe/Paris")!
        // 03:00 in Paris in winter is 02:00 UTC.
        #expect(try CronExpression("0 3 * * *").next(after: date("2026-11-27T12:00:00Z"), in: paris) == date("2026-11-28T02:00:00Z"))
        // 2:30 does not exist on 2027-03-28 in Paris (clocks go 2:00 → 3:00): that day is skipped.
        #expect(try CronExpression("30 2 * * *").next(after: date("2027-03-27T12:00:00Z"), in: paris) == date("2027-03-29T00:30:00Z"))
    }

    @Test("bad expressions are refused with the reason")
    func errors() {
        for bad in ["* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "*/0 * * * *", "5-1 * * * *",
                    "a * * * *", "1,,2 * * * *", "* * * foo *"] {
            #expect(throws: WorkflowError.self, "\(bad)") { try CronExpression(bad) }
        }
        let never = try? CronExpression("0 12 30 2 *")
        #expect(never != nil)
        #expect(never?.next(after: Date()) == nil, "30 February never comes")
    }
}
