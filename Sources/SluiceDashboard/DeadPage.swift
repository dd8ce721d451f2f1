import Foundation
import SluiceAPI
import SluiceCore

extension Dashboard {
    /// Queues with dead tasks (from the queue list), or a box to name one.
    func deadIndexPage(_ request: PageRequest) async throws -> HTML {
        var rows: [HTML] = []
        var note: HTML = .empty
        switch try await Self.unlessUnavailable({ try await client.queues() }) {
        case .success(let list):
            rows = list.queues.filter { !$0.missing }.sorted { ($0.dead ?? 0) > ($1.dead ?? 0) }.map { q in
                "<tr><td><a href=\"/ui/dead/\(raw: FormData.encode(q.queue))\">\(q.queue)</a></td><td class=\"num\">\(q.dead.map(String.init) ?? "—")</td></tr>"
            }
        case .failure(let why):
            note = "<p class=\"muted\">\(why.message)</p>"
        }
        let table: HTML = rows.isEmpty ? "<p class=\"muted\">No queues to list.</p>" : """
            <table><thead><tr><th>Queue</th><th class="num">Dead tasks</th></tr></thead><tbody>\(rows)</tbody></table>
            """
        return request.layout.page("Dead letters", section: .dead, notice: request.notice, """
            <h1>Dead letters</h1>
            <form class="card filters" method="get" action="/ui/dead"><label>Queue<input name="queue" required></label><button type="submit">Open</button></form>
            <div class="card">\(table)\(note)</div>
            """)
    }

    /// One queue's dead tasks: reason, error, arguments and headers of each;
    /// replay one, all or by reason; purge. Not live: each read takes the
    /// tasks from the dead queue and puts them back.
    func deadQueuePage(_ request: PageRequest, queue: String) async throws -> HTML {
        let page = try await client.deadTasks(queue: queue, limit: 200)
        let layout = request.layout
        let here = "/ui/dead/\(FormData.encode(queue))"
        let back = [("back", here)]
        let items = page.tasks.enumerated().map { index, task -> HTML in
            let headers = task.headers.sorted { $0.key < $1.key }.map { HTML("<tr><td class=\"mono\">\($0.key)</td><td class=\"mono\">\($0.value)</td></tr>") }
            return """
                <details id="dead-\(index)" data-task="\(task.id)"><summary><span class="mono">\(task.id)</span> <b>\(task.name)</b>
                <span class="badge s-dead">\(task.reason)</span><span class="muted">attempt \(task.attempt) · \(Format.time(task.deadAt))</span>
                <span class="muted">\(String((task.error ?? "").prefix(80)))</span></summary>
                <div><dl class="facts"><dt>Error</dt><dd>\(task.errorType.map { "\($0): " } ?? "")\(task.error ?? "—")</dd>
                <dt>Worker</dt><dd>\(task.worker ?? "—")</dd></dl>
                <p>Arguments</p><pre>\(task.arguments)</pre>
                <p>Headers</p><table>\(headers)</table>
                <div class="actions">\(layout.action(here + "/replay", "Replay this task", confirm: "Put task \(task.id) back on \(queue)?", style: "",
                                                     fields: [("id", task.id)] + back))</div></div></details>
                """
        }
        let reasons = Set(page.tasks.map(\.reason)).sorted()
        var actions: [HTML] = []
        if page.total > 0 {
            actions.append(layout.action(here + "/replay", "Replay all \(page.total)", confirm: "Put every dead task of \(queue) back on the queue?",
                                         style: "", fields: [("all", "1")] + back))
            for reason in reasons where reasons.count > 1 {
                actions.append(layout.action(here + "/replay", "Replay \(reason)", confirm: "Put the dead tasks of \(queue) with reason \(reason) back on the queue?",
                                             fields: [("reason", reason)] + back))
            }
            actions.append(layout.action(here + "/purge", "Purge", confirm: "Delete every dead task of \(queue)? This cannot be undone.",
                                         style: "danger", fields: back))
        }
        let shown: HTML = page.tasks.count < page.total ? "<p class=\"muted\">The oldest \(page.tasks.count) of \(page.total) are shown.</p>" : .empty
        return layout.page("Dead letters: \(queue)", section: .dead, notice: request.notice, """
            <h1>Dead letters of <span class="mono">\(queue)</span> <span class="badge s-dead" id="dead-total">\(page.total)</span></h1>
            <div class="actions">\(actions)<a href="\(here)">Reload</a></div>
            <div class="card" id="dead-tasks">\(items.isEmpty ? HTML("<p class=\"muted\">No dead tasks.</p>") : items.joined())\(shown)</div>
            """)
    }

    /// Replays or purges through the API.
    func deadCommand(_ command: String, queue: String, form: FormData) async throws -> ActionResult {
        let back = "/ui/dead/\(FormData.encode(queue))"
        if command == "purge" {
            let purged = try await client.purgeDeadTasks(queue: queue)
            return ActionResult(notice: "Purged \(purged.purged) dead task(s) of \(queue).", redirect: back)
        }
        var replay = ReplayDeadRequest()
        if form["all"] == "1" {
            replay.all = true
        } else if let reason = form.nonEmpty("reason") {
            replay.reason = reason
        } else {
            let ids = form.all("id").filter { !$0.isEmpty }
            guard !ids.isEmpty else { throw DashboardInputError(message: "which tasks? (the form named none)") }
            replay.ids = ids
        }
        let answer = try await client.replayDeadTasks(queue: queue, replay)
        if !answer.notFound.isEmpty {
            return ActionResult(notice: "Replayed \(answer.replayed.count); not in the dead queue any more: \(answer.notFound.joined(separator: ", ")).",
                                isError: true, redirect: back)
        }
        return ActionResult(notice: "Replayed \(answer.replayed.count) task(s) to \(queue).", redirect: back)
    }
}
