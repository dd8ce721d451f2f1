import Foundation
import SluiceAPI
import SluiceWorkflow

extension Dashboard {
    /// Runs, newest first: counts by status, filters (workflow, status,
    /// creation time, idempotency key), a page at a time.
    func runsPage(_ request: PageRequest) async throws -> HTML {
        let q = request.query
        var query = RunQuery(limit: 50)
        query.workflow = q.nonEmpty("workflow")
        if let s = q.nonEmpty("status") {
            guard let status = RunState.Status(rawValue: s) else { throw DashboardInputError(message: "unknown status \(s)") }
            query.status = status
        }
        query.createdAfter = q.nonEmpty("after").flatMap(Format.parseInput)
        query.createdBefore = q.nonEmpty("before").flatMap(Format.parseInput)
        query.idempotencyKey = q.nonEmpty("key")
        query.cursor = q.nonEmpty("cursor")
        let wanted = query
        async let statsCall = client.stats()
        async let pageCall = client.runs(wanted)
        let (stats, page) = try await (statsCall, pageCall)

        // Counts link to the same filters with that status.
        var keep = FormData(pairs: q.pairs.filter { ["workflow", "after", "before", "key"].contains($0.name) && !$0.value.isEmpty })
        let total = stats.runs.values.reduce(0, +)
        var counts: [HTML] = [HTML("<a href=\"/ui/runs?\(keep.encoded())\"\(raw: query.status == nil ? " class=\"current\"" : "")>All <b>\(total)</b></a>")]
        for status in RunState.Status.allCases {
            let n = stats.runs[status.rawValue] ?? 0
            var filtered = keep
            filtered.pairs.append(("status", status.rawValue))
            counts.append(HTML("<a href=\"/ui/runs?\(filtered.encoded())\"\(raw: query.status == status ? " class=\"current\"" : "")><span class=\"badge s-\(status.rawValue)\">\(status.rawValue)</span> <b>\(n)</b></a>"))
        }
        if let status = query.status { keep.pairs.append(("status", status.rawValue)) }

        let statusOptions = ([HTML("<option value=\"\">any</option>")] + RunState.Status.allCases.map { s in
            HTML("<option value=\"\(s.rawValue)\"\(raw: query.status == s ? " selected" : "")>\(s.rawValue)</option>")
        }).joined()
        let filters: HTML = """
            <form class="filters card" method="get" action="/ui/runs">
            <label>Workflow<input name="workflow" value="\(query.workflow)" placeholder="any"></label>
            <label>Status<select name="status">\(statusOptions)</select></label>
            <label>Created after (UTC)<input type="datetime-local" name="after" value="\(Format.localInput(query.createdAfter))"></label>
            <label>Created before (UTC)<input type="datetime-local" name="before" value="\(Format.localInput(query.createdBefore))"></label>
            <label>Idempotency key<input name="key" value="\(query.idempotencyKey)"></label>
            <button type="submit">Filter</button> <a href="/ui/runs">Clear</a></form>
            """

        let rows = page.runs.map { run -> HTML in
            let settled = run.steps.values.filter { $0.status.isSettled }.count
            return """
                <tr><td><a class="mono" href="/ui/runs/\(raw: FormData.encode(run.runID))">\(run.runID)</a></td>
                <td>\(run.workflow) <span class="muted">v\(run.version)</span></td>
                <td><span class="badge s-\(run.status.rawValue)">\(run.status.rawValue)</span></td>
                <td class="wide">\(Format.time(run.createdAt))</td>
                <td class="num">\(Format.duration(from: run.startedAt ?? run.createdAt, to: run.finishedAt))</td>
                <td class="num wide">\(settled)/\(run.steps.count)</td></tr>
                """
        }
        let table: HTML = rows.isEmpty
            ? "<p class=\"muted\">No runs match.</p>"
            : """
              <table><thead><tr><th>Run</th><th>Workflow</th><th>Status</th><th class="wide">Created</th><th class="num">Duration</th><th class="num wide">Steps settled</th></tr></thead>
              <tbody>\(rows)</tbody></table>
              """
        var pager: [HTML] = []
        if query.cursor != nil { pager.append(HTML("<a href=\"/ui/runs?\(keep.encoded())\">Newest</a>")) }
        if let next = page.nextCursor {
            var older = keep
            older.pairs.append(("cursor", next))
            pager.append(HTML("<a rel=\"next\" href=\"/ui/runs?\(older.encoded())\">Older →</a>"))
        }
        return request.layout.page("Runs", section: .runs, live: refreshSeconds, notice: request.notice, """
            <h1>Runs <span class="muted" id="live-stamp"></span></h1>
            <div class="counts">\(counts)</div>
            \(filters)
            <div class="card">\(table)<div class="pager">\(pager)</div></div>
            """)
    }
}
