import Foundation

/// The frame of every page: navigation, notices, the live region.
struct Layout: Sendable {
    enum Section: String, CaseIterable, Sendable {
        case runs = "Runs", queues = "Queues", workers = "Workers", dead = "Dead letters", schedules = "Schedules"
        var path: String {
            switch self {
            case .runs: "/ui/runs"
            case .queues: "/ui/queues"
            case .workers: "/ui/workers"
            case .dead: "/ui/dead"
            case .schedules: "/ui/schedules"
            }
        }
    }

    /// A message from the last action (kept in a short-lived cookie across its redirect).
    struct Notice: Sendable {
        var text: String
        var isError: Bool
    }

    var signedIn: Bool
    var formToken: String

    func page(_ title: String, section: Section?, live: Int? = nil, notice: Notice? = nil, _ body: HTML) -> HTML {
        let nav = Section.allCases.map { s in
            HTML("<a href=\"\(s.path)\"\(raw: s == section ? " class=\"current\" aria-current=\"page\"" : "")>\(s.rawValue)</a>")
        }
        let signOut: HTML = signedIn
            ? "<form method=\"post\" action=\"/ui/logout\">\(hiddenToken)<button type=\"submit\">Sign out</button></form>"
            : .empty
        let noticeHTML: HTML = notice.map { HTML("<p class=\"notice\(raw: $0.isError ? " error" : "")\" role=\"status\">\($0.text)</p>") } ?? .empty
        let liveAttribute: HTML = live.map { HTML(" data-live=\"\($0)\"") } ?? .empty
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(title) · Sluice</title>
            <link rel="stylesheet" href="/ui/static/app.css"><script src="/ui/static/app.js" defer></script></head>
            <body><header class="top"><a class="brand" href="/ui/runs">Sluice</a><nav>\(nav)</nav>\(signOut)</header>
            <main id="main"\(liveAttribute)>\(noticeHTML)\(body)</main></body></html>
            """
    }

    /// The hidden fields of a form that changes something.
    var hiddenToken: HTML { "<input type=\"hidden\" name=\"csrf\" value=\"\(formToken)\">" }

    /// A one-button form that asks for confirmation (a dialog with the
    /// script on, a page of its own without).
    func action(_ path: String, _ label: String, confirm: String? = nil, style: String = "secondary",
                fields: [(String, String)] = []) -> HTML {
        let hidden = fields.map { HTML("<input type=\"hidden\" name=\"\($0.0)\" value=\"\($0.1)\">") }
        let ask: HTML = confirm.map { HTML(" data-confirm=\"\($0)\"") } ?? .empty
        return """
            <form class="inline" method="post" action="\(path)"\(ask)>\(hiddenToken)<input type="hidden" name="confirmed" value="">\(hidden)<button type="submit" class="\(style)">\(label)</button></form>
            """
    }
}

/// How times and durations read on the pages.
enum Format {
    static func time(_ date: Date?) -> String {
        guard let date else { return "—" }
        var text = date.formatted(.iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: false).timeSeparator(.colon))
        if let t = text.firstIndex(of: "T") { text.replaceSubrange(t...t, with: " ") }
        return text.hasSuffix("Z") ? text : text + "Z"
    }

    static func duration(_ seconds: Double) -> String {
        if seconds < 0 { return "—" }
        if seconds < 1 { return "\(Int((seconds * 1000).rounded())) ms" }
        if seconds < 60 { return String(format: "%.1f s", seconds) }
        let s = Int(seconds.rounded())
        if s < 3600 { return "\(s / 60) m \(s % 60) s" }
        if s < 86400 { return "\(s / 3600) h \(s % 3600 / 60) m" }
        return "\(s / 86400) d \(s % 86400 / 3600) h"
    }

    static func duration(from start: Date?, to end: Date?, now: Date = Date()) -> String {
        guard let start else { return "—" }
        return duration((end ?? now).timeIntervalSince(start))
    }

    /// The time an input of type datetime-local shows, in UTC.
    static func localInput(_ date: Date?) -> String {
        guard let date else { return "" }
        return String(time(date).dropLast().prefix(16)).replacingOccurrences(of: " ", with: "T")
    }

    /// What a datetime-local input sent (taken as UTC), or an ISO time.
    static func parseInput(_ text: String) -> Date? {
        let t = text.trimmingCharacters(in: .whitespaces)
        guard !t.isEmpty else { return nil }
        for candidate in [t, t + "Z", t + ":00Z"] {
            if let d = try? Date(candidate, strategy: .iso8601) { return d }
        }
        return nil
    }
}
