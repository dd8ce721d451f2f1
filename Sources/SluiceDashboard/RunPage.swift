import Foundation
import SluiceAPI
import SluiceCore
import SluiceWorkflow

extension Dashboard {
    /// One run: its definition drawn as a graph coloured by state, its steps
    /// (attempts, times, errors, outputs), input and output, and buttons.
    func runPage(_ request: PageRequest, id: String) async throws -> HTML {
        let run = try await client.run(id)
        let definition = try? await client.workflow(name: run.workflow, version: run.version)
        let layout = request.layout
        let here = "/ui/runs/\(FormData.encode(run.runID))"
        let now = Date()

        // Commands the run's status allows.
        var actions: [HTML] = []
        let back = [("back", here)]
        switch run.status {
        case .running:
            actions.append(layout.action(here + "/pause", "Pause", fields: back))
        case .paused:
            actions.append(layout.action(here + "/resume", "Resume", style: "", fields: back))
        default: break
        }
        if !run.status.isFinal && run.status != .compensating {
            actions.append(layout.action(here + "/cancel", "Cancel run", confirm: "Cancel run \(run.runID)? Steps still running finish; nothing new starts.",
                                         style: "danger", fields: back))
        }

        let steps = definition?.steps ?? run.steps.keys.sorted().map { WorkflowStep(id: $0, .join(.all)) }
        let graph = RunGraph.svg(nodes: steps.map { node($0, run: run, now: now) }, edges: edges(steps),
                                 title: "\(run.workflow) v\(run.version), run \(run.runID)")

        var facts: [HTML] = [
            "<dt>Workflow</dt><dd><a href=\"/ui/runs?workflow=\(raw: FormData.encode(run.workflow))\">\(run.workflow)</a> v\(run.version)</dd>",
            "<dt>Created</dt><dd>\(Format.time(run.createdAt))</dd>",
            "<dt>Started</dt><dd>\(Format.time(run.startedAt))</dd>",
            "<dt>Finished</dt><dd>\(Format.time(run.finishedAt))</dd>",
            "<dt>Duration</dt><dd>\(Format.duration(from: run.startedAt ?? run.createdAt, to: run.finishedAt, now: now))</dd>",
        ]
        if let parent = run.parent {
            facts.append("<dt>Parent run</dt><dd><a class=\"mono\" href=\"/ui/runs/\(raw: FormData.encode(parent.runID))\">\(parent.runID)</a></dd>")
        }
        if let trace = run.traceparent.flatMap(Self.traceID) {
            facts.append("<dt>Trace</dt><dd class=\"mono\" id=\"trace-id\">\(traceLink(trace))</dd>")
        }
        if let slot = run.slot {
            facts.append("<dt>Concurrency slot</dt><dd>key <code>\(slot.key)</code>, limit \(slot.limit)</dd>")
        }
        if let error = run.error {
            facts.append("<dt>Error</dt><dd>\(error)\(raw: run.failedStep.map { " (step \(HTML.escape($0)))" } ?? "")</dd>")
        }
        if let compensation = run.compensation {
            facts.append("<dt>Compensation</dt><dd>after the run \(compensation.cause.rawValue): \(compensation.done) step(s) undone\(raw: compensation.error.map { ", stopped: " + HTML.escape($0) } ?? "")</dd>")
        }
        if let kept = run.signals, !kept.isEmpty {
            facts.append("<dt>Signals kept</dt><dd>\(kept.map { "\($0.name) (\(Format.time($0.at)))" }.joined(separator: ", "))</dd>")
        }

        let signalForm = signalForm(run: run, steps: steps, here: here, layout: layout)
        let stepList = steps.map { stepDetails($0, run: run, here: here, layout: layout, now: now) }
        let output: HTML = run.output.map { "<h2>Output</h2><pre>\(Self.pretty($0))</pre>" } ?? .empty
        let history = (run.history ?? []).reversed().map { record in
            HTML("<tr><td>\(Format.time(record.at))</td><td><b>\(record.command)</b></td><td>\(record.detail ?? "")</td></tr>")
        }
        let historyHTML: HTML = history.isEmpty ? .empty : """
            <h2>Commands</h2><div class="card"><table id="history"><thead><tr><th>When (UTC)</th><th>Command</th><th>Detail</th></tr></thead>
            <tbody>\(history)</tbody></table></div>
            """
        return layout.page("Run \(run.runID)", section: .runs, live: run.status.isFinal ? nil : refreshSeconds, notice: request.notice, """
            <h1><span class="mono">\(run.runID)</span> <span class="badge s-\(run.status.rawValue)" id="run-status">\(run.status.rawValue)</span>
            <span class="muted" id="live-stamp"></span></h1>
            <div class="actions">\(actions)</div>
            <div class="card graph">\(raw: graph)</div>
            <div class="card"><dl class="facts">\(facts)</dl></div>
            \(signalForm)
            <h2>Steps</h2><div class="card" id="steps">\(stepList)</div>
            \(historyHTML)
            <h2>Input</h2><pre>\(Self.pretty(run.input))</pre>
            \(output)
            """)
    }

    /// A step as a node of the graph.
    func node(_ step: WorkflowStep, run: RunState, now: Date) -> GraphNode {
        let state = run.steps[step.id]
        var status = state?.status.rawValue ?? "waiting"
        if let c = state?.compensation { status = c.status == .running ? "compensating" : c.status == .succeeded ? "compensated" : status }
        var node = GraphNode(id: step.id, label: step.id, detail: Self.kindText(step.kind), state: status, href: "#step-\(step.id)")
        switch step.kind {
        case .map:
            let c = Self.counts(state?.elements ?? [])
            node.progress = .init(succeeded: c.succeeded, failed: c.failed, running: c.running, total: c.total)
        case .workflow:
            if state?.startedAt != nil, let child = run.childRunID(step: step.id) { node.href = "/ui/runs/\(FormData.encode(child))" }
        case .delay(let ms):
            if state?.status == .running, let start = state?.startedAt {
                node.detail += " · due \(Format.time(start.addingTimeInterval(Double(ms) / 1000)).suffix(9))"
            }
        case .signal(let spec):
            if state?.status == .running, let ms = spec.timeoutMilliseconds, let start = state?.startedAt {
                node.detail += " · until \(Format.time(start.addingTimeInterval(Double(ms) / 1000)).suffix(9))"
            }
        default: break
        }
        return node
    }

    /// `after` edges, and a branch's edges to the steps it decides.
    func edges(_ steps: [WorkflowStep]) -> [GraphEdge] {
        var edges: [GraphEdge] = []
        var labelled = Set<String>()
        for step in steps {
            if case .branch(let spec) = step.kind {
                for target in spec.then { edges.append(GraphEdge(from: step.id, to: target, label: "then")); labelled.insert("\(step.id)>\(target)") }
                for target in spec.otherwise { edges.append(GraphEdge(from: step.id, to: target, label: "else")); labelled.insert("\(step.id)>\(target)") }
            }
        }
        for step in steps {
            for dependency in step.after where !labelled.contains("\(dependency)>\(step.id)") {
                edges.append(GraphEdge(from: dependency, to: step.id, label: nil))
            }
        }
        return edges
    }

    static func kindText(_ kind: WorkflowStep.Kind) -> String {
        switch kind {
        case .task(let spec): "task \(spec.name)"
        case .map(let spec): "map \(spec.task.name)"
        case .join: "join"
        case .branch(let spec): "if \(spec.condition.description)"
        case .workflow(let spec): "workflow \(spec.name)"
        case .delay(let ms): "wait \(Format.duration(Double(ms) / 1000))"
        case .signal(let spec): "signal \(spec.name)"
        }
    }

    /// A step's details, opened by a click on its node or its line.
    func stepDetails(_ step: WorkflowStep, run: RunState, here: String, layout: Layout, now: Date) -> HTML {
        let state = run.steps[step.id] ?? StepState()
        var rows: [HTML] = ["<dt>Kind</dt><dd>\(Self.kindText(step.kind))</dd>"]
        if !step.after.isEmpty { rows.append("<dt>After</dt><dd>\(step.after.joined(separator: ", "))</dd>") }
        rows.append("<dt>Started</dt><dd>\(Format.time(state.startedAt))</dd>")
        rows.append("<dt>Finished</dt><dd>\(Format.time(state.finishedAt))</dd>")
        if state.attempts > 0 { rows.append("<dt>Attempts</dt><dd>\(state.attempts)</dd>") }
        if state.generation > 0 { rows.append("<dt>Retried by hand</dt><dd>\(state.generation) time(s)</dd>") }
        if let progress = state.progress {
            rows.append("<dt>Progress</dt><dd>\(Int((progress * 100).rounded()))%\(raw: state.progressMessage.map { " · " + HTML.escape($0) } ?? "")</dd>")
        }
        if let error = state.error { rows.append("<dt>Error</dt><dd class=\"step-error\">\(error)</dd>") }
        // Every step task of a run is in the run's trace (a span of its own, parented there).
        if state.startedAt != nil, let trace = run.traceparent.flatMap(Self.traceID) {
            rows.append("<dt>Trace</dt><dd class=\"mono\">\(traceLink(trace))</dd>")
        }
        if case .workflow = step.kind, state.startedAt != nil, let child = run.childRunID(step: step.id) {
            rows.append("<dt>Child run</dt><dd><a class=\"mono\" href=\"/ui/runs/\(raw: FormData.encode(child))\">\(child)</a></dd>")
        }
        if let c = state.compensation {
            rows.append("<dt>Compensation</dt><dd>\(c.status.rawValue), \(c.attempts) attempt(s)\(raw: c.error.map { ": " + HTML.escape($0) } ?? "")</dd>")
        }
        var elementsHTML: HTML = .empty
        if let elements = state.elements {
            let (succeeded, failed, running, _) = Self.counts(elements)
            rows.append("<dt>Elements</dt><dd>\(Self.bar(succeeded: succeeded, failed: failed, running: running, total: elements.count)) \(succeeded) done, \(failed) failed, \(running) running of \(elements.count)</dd>")
            let failures = elements.enumerated().filter { $0.element.status == .failed }.prefix(20)
            if !failures.isEmpty {
                let items = failures.map { HTML("<li>#\($0.offset): \($0.element.error ?? "failed")</li>") }
                elementsHTML = "<p>Failed elements\(raw: failed > 20 ? " (first 20)" : ""):</p><ul>\(items)</ul>"
            }
        }
        let output: HTML = state.output.map { "<p>Output</p><pre>\(Self.pretty($0))</pre>" } ?? .empty
        var buttons: [HTML] = []
        if (state.status == .failed || state.status == .succeeded) && (run.status == .failed || run.status == .running || run.status == .paused) {
            let label = state.status == .failed ? "Retry step" : "Run again"
            buttons.append(layout.action(here + "/retry", label, confirm: "\(label) \(step.id) of run \(run.runID)?", style: state.status == .failed ? "" : "secondary",
                                         fields: [("step", step.id), ("rerun", state.status == .failed ? "" : "1"), ("back", here)]))
        }
        let duration = state.startedAt == nil ? "" : Format.duration(from: state.startedAt, to: state.finishedAt, now: now)
        return """
            <details id="step-\(step.id)" data-status="\(state.status.rawValue)"><summary><b>\(step.id)</b>
            <span class="badge s-\(state.status.rawValue)">\(state.status.rawValue)</span>
            <span class="muted">\(Self.kindText(step.kind))</span><span class="muted">\(duration)</span></summary>
            <div><dl class="facts">\(rows)</dl>\(elementsHTML)\(output)<div class="actions">\(buttons)</div></div></details>
            """
    }

    /// A form to send a signal when a signal step of the run waits (or may wait) for one.
    func signalForm(run: RunState, steps: [WorkflowStep], here: String, layout: Layout) -> HTML {
        guard !run.status.isFinal, run.status != .compensating else { return .empty }
        let names = steps.compactMap { step -> String? in
            guard case .signal(let spec) = step.kind, !(run.steps[step.id]?.status.isSettled ?? false) else { return nil }
            return spec.name
        }
        guard !names.isEmpty else { return .empty }
        let options = Array(Set(names)).sorted().map { HTML("<option>\($0)</option>") }
        return """
            <h2>Send a signal</h2><form class="card filters" method="post" action="\(here)/signal">\(layout.hiddenToken)
            <input type="hidden" name="back" value="\(here)">
            <label>Signal<select name="name">\(options)</select></label>
            <label class="grow">Data (JSON, optional)<textarea name="data" placeholder="{&quot;approved&quot;: true}"></textarea></label>
            <button type="submit">Send</button></form>
            """
    }

    /// Runs a command from the run page's buttons through the API.
    func runCommand(_ command: String, id: String, form: FormData) async throws -> ActionResult {
        let back = "/ui/runs/\(FormData.encode(id))"
        switch command {
        case "pause":
            _ = try await client.pause(run: id)
            return ActionResult(notice: "Paused run \(id).", redirect: back)
        case "resume":
            _ = try await client.resume(run: id)
            return ActionResult(notice: "Resumed run \(id).", redirect: back)
        case "cancel":
            _ = try await client.cancel(run: id, reason: form.nonEmpty("reason") ?? "cancelled from the dashboard")
            return ActionResult(notice: "Cancelled run \(id).", redirect: back)
        case "retry":
            guard let step = form.nonEmpty("step") else { throw DashboardInputError(message: "which step? (the form sent none)") }
            _ = try await client.retry(run: id, step: step, rerun: form["rerun"] == "1")
            return ActionResult(notice: "Retrying step \(step).", redirect: back + "#step-\(step)")
        case "signal":
            guard let name = form.nonEmpty("name") else { throw DashboardInputError(message: "which signal? (the form sent none)") }
            var data: JSONValue?
            if let text = form.nonEmpty("data") {
                do { data = try JSONValue.parse(text) } catch { throw DashboardInputError(message: "the signal's data is not JSON: \(text.prefix(100))") }
            }
            let answer = try await client.signal(run: id, name: name, data: data)
            return ActionResult(notice: answer.kept == true ? "Signal \(name) kept for the step that will wait for it." : "Sent signal \(name).",
                                redirect: back)
        default:
            throw DashboardInputError(message: "unknown command \(command)")
        }
    }

    /// A map's elements by state, in one pass.
    static func counts(_ elements: [ElementState]) -> (succeeded: Int, failed: Int, running: Int, total: Int) {
        var c = (succeeded: 0, failed: 0, running: 0, total: elements.count)
        for e in elements {
            switch e.status {
            case .succeeded: c.succeeded += 1
            case .failed: c.failed += 1
            case .running: c.running += 1
            default: break
            }
        }
        return c
    }

    /// A trace id, linked to the trace viewer when one is configured.
    func traceLink(_ trace: String) -> HTML {
        guard let traceURL, traceURL.contains("{traceId}") else { return "\(trace)" }
        return "<a href=\"\(traceURL.replacingOccurrences(of: "{traceId}", with: trace))\" rel=\"noopener\">\(trace)</a>"
    }

    /// The trace id of a W3C traceparent (`00-<trace id>-<span id>-<flags>`).
    static func traceID(_ traceparent: String) -> String? { TraceParent(traceparent)?.traceID }

    /// JSON as indented text, cut at 64 KiB.
    static func pretty(_ value: JSONValue) -> String {
        if value == [:] { return "{}" }
        let bytes = value.jsonBytes
        if bytes.count > 65_536 { return String(decoding: bytes.prefix(65_536), as: UTF8.self) + " … (cut: \(bytes.count) bytes)" }
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]),
              let data = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes]) else {
            return String(decoding: bytes, as: UTF8.self)
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// A progress bar (done, failed, running of a total), as SVG: the pages'
    /// security policy allows no inline styles.
    static func bar(succeeded: Int, failed: Int, running: Int, total: Int) -> HTML {
        guard total > 0 else { return .empty }
        var x = 0.0
        var parts: [HTML] = []
        for (count, kind) in [(succeeded, "succeeded"), (failed, "failed"), (running, "running")] where count > 0 {
            let w = Double(count) * 120 / Double(total)
            parts.append(HTML("<rect class=\"b-\(kind)\" x=\"\(raw: String(format: "%.1f", x))\" y=\"0\" width=\"\(raw: String(format: "%.1f", w))\" height=\"8\"/>"))
            x += w
        }
        return """
            <svg class="bar" width="120" height="8" viewBox="0 0 120 8" role="img" aria-label="\(succeeded) done, \(failed) failed, \(running) running of \(total)"><rect class="b-track" width="120" height="8" rx="4"/>\(parts)</svg>
            """
    }
}
