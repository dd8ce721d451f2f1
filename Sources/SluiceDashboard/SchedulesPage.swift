import Foundation
import SluiceAPI
import SluiceWorkflow

extension Dashboard {
    /// Cron schedules with their next fire times; each can be removed.
    func schedulesPage(_ request: PageRequest) async throws -> HTML {
        // Paused ones last.
        let schedules = try await client.schedules().sorted {
            ($0.nextFireAt ?? .distantFuture, $0.spec.id) < ($1.nextFireAt ?? .distantFuture, $1.spec.id)
        }
        let layout = request.layout
        let rows = schedules.map { view -> HTML in
            let spec = view.spec
            let what: HTML
            switch spec.action {
            case .workflow(let name, let version, _):
                what = "start <a href=\"/ui/runs?workflow=\(raw: FormData.encode(name))\">\(name)</a>\(raw: version.map { " v\($0)" } ?? "")"
            case .task(let name, let queue, _):
                what = "enqueue <code>\(name)</code>\(raw: queue.map { " on " + HTML.escape($0) } ?? "")"
            }
            return """
                <tr id="schedule-\(spec.id)"><td class="mono">\(spec.id)</td><td><code>\(spec.cron)</code> <span class="muted">\(spec.timeZone)</span></td>
                <td>\(what)</td><td class="wide">\(spec.misfire.rawValue)</td><td>\(spec.paused ? HTML("<span class=\"badge s-paused\">paused</span>") : HTML("\(Format.time(view.nextFireAt))"))</td>
                <td>\(layout.action("/ui/schedules/\(FormData.encode(spec.id))/\(spec.paused ? "resume" : "pause")", spec.paused ? "Resume" : "Pause",
                                     fields: [("back", "/ui/schedules")]))
                \(layout.action("/ui/schedules/\(FormData.encode(spec.id))/delete", "Remove", confirm: "Remove schedule \(spec.id)? It fires no more.",
                                 style: "danger", fields: [("back", "/ui/schedules")]))</td></tr>
                """
        }
        let table: HTML = rows.isEmpty
            ? "<p class=\"muted\">No schedules. Add one with <code>sluice schedule add</code> or <code>POST /v1/schedules</code>.</p>"
            : """
              <table><thead><tr><th>Id</th><th>When</th><th>What</th><th class="wide">Missed fires</th><th>Next fire (UTC)</th><th></th></tr></thead>
              <tbody>\(rows)</tbody></table>
              """
        return layout.page("Schedules", section: .schedules, live: refreshSeconds * 6, notice: request.notice, """
            <h1>Schedules</h1><div class="card">\(table)</div>
            """)
    }
}
