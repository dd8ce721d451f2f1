import Foundation
import SluiceAPI
import SluiceCore

extension Dashboard {
    /// What `sluice top` shows: per queue ready, unacknowledged, consumers,
    /// rates, dead, oldest age, replicas, with charts of recent samples.
    func queuesPage(_ request: PageRequest) async throws -> HTML {
        let list: QueueList
        switch try await Self.unlessUnavailable({ try await client.queues() }) {
        case .success(let answer): list = answer
        case .failure(let why): return unavailablePage(request, "Queues", .queues, why)
        }
        func number(_ n: Int?) -> String { n.map(String.init) ?? "—" }
        func rate(_ r: Double?) -> String { r.map { String(format: "%.1f", $0) } ?? "—" }
        let rows = list.queues.filter { !$0.missing }.map { q -> HTML in
            let replicas: String = q.members.map { "\(q.online ?? 0)/\($0)" } ?? "—"
            let deadCell: HTML = (q.dead ?? 0) > 0
                ? "<a href=\"/ui/dead/\(raw: FormData.encode(q.queue))\">\(number(q.dead))</a>"
                : "\(number(q.dead))"
            return """
                <tr id="queue-\(q.queue)"><td><b>\(q.queue)</b></td><td class="num">\(number(q.ready))</td>
                <td class="num wide">\(number(q.unacknowledged))</td><td class="num">\(number(q.consumers))</td>
                <td class="num wide">\(rate(q.publishRate))</td><td class="num">\(rate(q.deliverRate))</td><td class="num wide">\(rate(q.ackRate))</td>
                <td class="num">\(deadCell)</td><td class="num">\(q.oldestAgeSeconds.map { Format.duration($0) } ?? "—")</td>
                <td class="num wide">\(replicas)</td>
                <td class="wide">\(Self.sparkline(q.history.map { $0.ready.map(Double.init) }, label: "ready"))
                \(list.ratesAvailable ? Self.sparkline(q.history.map(\.deliverRate), label: "delivered/s") : .empty)</td></tr>
                """
        }
        let note: HTML = list.ratesAvailable ? .empty
            : "<p class=\"muted\">Rates and unacknowledged counts need the management API (\(list.ratesUnavailableReason ?? "not configured")).</p>"
        let table: HTML = rows.isEmpty ? "<p class=\"muted\">No task queues yet.</p>" : """
            <table><thead><tr><th>Queue</th><th class="num">Ready</th><th class="num wide">Unacked</th><th class="num">Consumers</th>
            <th class="num wide">Publish/s</th><th class="num">Deliver/s</th><th class="num wide">Ack/s</th><th class="num">Dead</th>
            <th class="num">Oldest</th><th class="num wide">Replicas</th><th class="wide">Recent (ready, delivered/s)</th></tr></thead><tbody>\(rows)</tbody></table>
            """
        return request.layout.page("Queues", section: .queues, live: refreshSeconds, notice: request.notice, """
            <h1>Queues <span class="muted" id="live-stamp"></span></h1>
            <p class="muted">Sampled \(Format.time(list.at))\(raw: list.delayed.map { " · \($0) task(s) waiting in the delay ladder" } ?? "")</p>
            <div class="card">\(table)\(note)</div>
            """)
    }

    /// Live workers from their heartbeats.
    func workersPage(_ request: PageRequest) async throws -> HTML {
        let list: WorkerList
        switch try await Self.unlessUnavailable({ try await client.workers() }) {
        case .success(let answer): list = answer
        case .failure(let why): return unavailablePage(request, "Workers", .workers, why)
        }
        let rows = list.workers.map { w -> HTML in
            """
            <tr id="worker-\(w.worker)"><td class="mono">\(w.worker)</td><td><span class="badge s-\(w.status == "running" ? "running" : w.status == "gone" ? "failed" : "cancelled")">\(w.status)</span></td>
            <td class="wide">\(w.host) · pid \(w.pid)</td><td>\(w.queues.joined(separator: ", "))</td>
            <td class="num">\(w.inFlight)/\(w.concurrency)</td><td class="num">\(w.processed)</td><td class="num wide">\(w.succeeded)</td>
            <td class="num wide">\(w.retried)</td><td class="num">\(w.dead)</td><td class="num wide">\(Format.duration(w.uptimeSeconds + w.silentSeconds))</td>
            <td class="num">\(Format.duration(w.silentSeconds)) ago</td></tr>
            """
        }
        let table: HTML = rows.isEmpty ? "<p class=\"muted\">No worker has sent a heartbeat recently.</p>" : """
            <table><thead><tr><th>Worker</th><th>Status</th><th class="wide">Host</th><th>Queues</th><th class="num">Busy</th>
            <th class="num">Processed</th><th class="num wide">Succeeded</th><th class="num wide">Retried</th><th class="num">Dead</th>
            <th class="num wide">Up</th><th class="num">Last heard</th></tr></thead><tbody>\(rows)</tbody></table>
            """
        return request.layout.page("Workers", section: .workers, live: refreshSeconds, notice: request.notice, """
            <h1>Workers <span class="muted" id="live-stamp"></span></h1><div class="card">\(table)</div>
            """)
    }

    /// The API's answer, or its refusal when the view is unavailable here
    /// (this coordinator samples no queues, or leads nothing); other failures are thrown.
    static func unlessUnavailable<T>(_ call: () async throws -> T) async throws -> Result<T, CoordinatorClient.Failure> {
        do {
            return .success(try await call())
        } catch let failure as CoordinatorClient.Failure where failure.kind == .refused(status: 503, code: "unavailable") {
            return .failure(failure)
        }
    }

    /// The API's reason why queues or workers cannot be shown here; the page keeps asking (it may lead soon).
    func unavailablePage(_ request: PageRequest, _ title: String, _ section: Layout.Section, _ why: CoordinatorClient.Failure) -> HTML {
        request.layout.page(title, section: section, live: refreshSeconds, notice: request.notice, """
            <h1>\(title)</h1><div class="card"><p class="muted">\(why.message)</p></div>
            """)
    }

    /// A small line chart of recent values (nil values are gaps left out).
    static func sparkline(_ values: [Double?], label: String) -> HTML {
        let points = values.enumerated().compactMap { i, v in v.map { (i, $0) } }
        guard points.count >= 2 else { return .empty }
        let width = 100.0, height = 22.0
        let top = max(points.map(\.1).max() ?? 1, 1)
        let step = width / Double(max(values.count - 1, 1))
        let coordinates = points.map { String(format: "%.1f,%.1f", Double($0.0) * step, height - 1 - ($0.1 / top) * (height - 2)) }
        let last = points.last.map { $0.1 } ?? 0
        return """
            <svg class="spark" width="100" height="22" viewBox="0 0 100 22" role="img" aria-label="\(label): last \(String(format: "%.1f", last)), peak \(String(format: "%.1f", top))"><title>\(label): last \(String(format: "%.1f", last)), peak \(String(format: "%.1f", top))</title><polyline points="\(coordinates.joined(separator: " "))"/></svg>
            """
    }
}
