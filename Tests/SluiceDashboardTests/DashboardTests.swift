import Foundation
import SluiceAPI
@testable import SluiceDashboard
import SluiceWorkflow
import Testing

private func makeDashboard() -> Dashboard {
    Dashboard(client: CoordinatorClient(base: URL(string: "http://127.0.0.1:1")!), token: nil)
}

private func run(_ steps: [String: StepState]) -> RunState {
    RunState(runID: "r1", workflow: "orders", version: 1, input: [:], steps: steps, createdAt: Date(timeIntervalSince1970: 0))
}

private func stepState(_ status: StepState.Status, startedAt: Date? = nil) -> StepState {
    var state = StepState()
    state.status = status
    state.startedAt = startedAt
    return state
}

private func element(_ status: StepState.Status) -> ElementState {
    var element = ElementState()
    element.status = status
    return element
}

@Suite("Dashboard: HTML")
struct HTMLTests {
    @Test("an interpolated String is escaped")
    func escapesStrings() {
        let hostile = "<script>&\"'"
        let html: HTML = "<p>\(hostile)</p>"
        #expect(html.description == "<p>&lt;script&gt;&amp;&quot;&#39;</p>")
    }

    @Test("HTML values and raw: interpolations go in as they are")
    func htmlAndRawUnescaped() {
        let inner: HTML = "<b>bold</b>"
        let html: HTML = "<p>\(inner)\(raw: "<i>&</i>")</p>"
        #expect(html.description == "<p><b>bold</b><i>&</i></p>")
    }

    @Test("a nil String? interpolates to nothing; an Int to its digits")
    func optionalAndInt() {
        let missing: String? = nil
        let present: String? = "<x>"
        let count = 42
        let html: HTML = "a\(missing)b\(present)c\(count)"
        #expect(html.description == "ab&lt;x&gt;c42")
    }

    @Test("[HTML].joined() and array interpolation concatenate without escaping")
    func joined() {
        let parts: [HTML] = [HTML(raw: "<a>"), "b&", HTML.empty, "</a>"]
        #expect(parts.joined().description == "<a>b&</a>")
        let wrapped: HTML = "<div>\(parts)</div>"
        #expect(wrapped.description == "<div><a>b&</a></div>")
        #expect(([] as [HTML]).joined().description == "")
    }
}

@Suite("Dashboard: form data")
struct FormDataTests {
    @Test("decodes repeated names, + as space and percent escapes")
    func decodes() {
        let form = FormData(encoded: "a=1&b=x+y&c=%2Fp%C3%A9&a=2")
        #expect(form["a"] == "1")
        #expect(form.all("a") == ["1", "2"])
        #expect(form["b"] == "x y")
        #expect(form["c"] == "/pé")
        #expect(form["missing"] == nil)
        #expect(form.all("missing").isEmpty)
    }

    @Test("nonEmpty is nil for blank or missing values and trims the rest")
    func nonEmpty() {
        let form = FormData(encoded: "blank=++&v=+x+&e=")
        #expect(form.nonEmpty("blank") == nil)
        #expect(form.nonEmpty("e") == nil)
        #expect(form.nonEmpty("missing") == nil)
        #expect(form.nonEmpty("v") == "x")
    }

    @Test("a name without = has the empty value")
    func nameWithoutValue() {
        let form = FormData(encoded: "flag&x=1")
        #expect(form["flag"] == "")
        #expect(form["x"] == "1")
    }

    @Test("encoding escapes & = + space and / and round-trips")
    func roundTrip() {
        let value = "a&b=c+d /e é"
        #expect(FormData.encode("a&b=c+d /e") == "a%26b%3Dc%2Bd%20%2Fe")
        let form = FormData(pairs: [(name: "q k", value: value), (name: "n", value: "1"), (name: "n", value: "2")])
        let text = form.encoded()
        #expect(!text.contains(" "))
        let back = FormData(encoded: text)
        #expect(back["q k"] == value)
        #expect(back.all("n") == ["1", "2"])
    }
}

@Suite("Dashboard: sign-in and forms")
struct DashboardAuthTests {
    @Test("without a token nobody needs to sign in")
    func noToken() {
        let auth = DashboardAuth(token: nil)
        #expect(!auth.needsSignIn)
        #expect(auth.isSignedIn(cookieHeader: nil))
        #expect(!DashboardAuth(token: "").needsSignIn, "an empty token is no token")
    }

    @Test("with a token, only the right session cookie signs in")
    func session() {
        let auth = DashboardAuth(token: "s3cret")
        #expect(auth.needsSignIn)
        #expect(!auth.isSignedIn(cookieHeader: nil))
        #expect(!auth.isSignedIn(cookieHeader: "other=1"))
        #expect(auth.isSignedIn(cookieHeader: "other=1; sluice_session=\(auth.sessionValue)"))
        #expect(!auth.isSignedIn(cookieHeader: "sluice_session=\(DashboardAuth(token: "other").sessionValue)"))
        #expect(!auth.isSignedIn(cookieHeader: "sluice_session=s3cret"), "the cookie holds a MAC, not the token")
    }

    @Test("accepts only the exact token")
    func acceptsToken() {
        let auth = DashboardAuth(token: "s3cret")
        #expect(auth.accepts(token: "s3cret"))
        #expect(!auth.accepts(token: "s3cre"))
        #expect(!auth.accepts(token: "s3cret "))
        #expect(!auth.accepts(token: "S3CRET"))
        #expect(!auth.accepts(token: ""))
    }

    @Test("the form token is 64 hex digits derived from the token")
    func formTokenFromToken() {
        let auth = DashboardAuth(token: "s3cret")
        let hex = Set("0123456789abcdef")
        #expect(auth.formToken.count == 64)
        #expect(auth.formToken.allSatisfy { hex.contains($0) })
        #expect(auth.formToken == DashboardAuth(token: "s3cret").formToken)
        #expect(auth.formToken != DashboardAuth(token: "other").formToken)
        #expect(auth.formToken != auth.sessionValue)
    }

    @Test("without a token the form token comes from a random key")
    func formTokenRandom() {
        #expect(DashboardAuth(token: nil).formToken != DashboardAuth(token: nil).formToken)
    }

    @Test("isGenuine accepts only this instance's form token")
    func genuine() {
        let auth = DashboardAuth(token: "s3cret")
        #expect(auth.isGenuine(formToken: auth.formToken))
        #expect(!auth.isGenuine(formToken: nil))
        #expect(!auth.isGenuine(formToken: ""))
        #expect(!auth.isGenuine(formToken: DashboardAuth(token: "other").formToken))
        #expect(!auth.isGenuine(formToken: auth.sessionValue))
    }

    @Test("same origin: matching origin, no headers, or a null origin the browser calls same-origin")
    func sameOrigin() {
        #expect(DashboardAuth.isSameOrigin(origin: "http://127.0.0.1:27200", fetchSite: nil, host: "127.0.0.1:27200"))
        #expect(DashboardAuth.isSameOrigin(origin: nil, fetchSite: nil, host: "127.0.0.1:27200"))
        #expect(DashboardAuth.isSameOrigin(origin: "null", fetchSite: "same-origin", host: "127.0.0.1:27200"))
        #expect(DashboardAuth.isSameOrigin(origin: "HTTP://LOCALHOST:8080", fetchSite: "same-origin", host: "localhost:8080"))
    }

    @Test("another site: a foreign origin, or a cross-site fetch even without an origin")
    func crossOrigin() {
        #expect(!DashboardAuth.isSameOrigin(origin: "http://evil.example", fetchSite: nil, host: "127.0.0.1:27200"))
        #expect(!DashboardAuth.isSameOrigin(origin: nil, fetchSite: "cross-site", host: "127.0.0.1:27200"))
        #expect(!DashboardAuth.isSameOrigin(origin: "http://127.0.0.1:27201", fetchSite: nil, host: "127.0.0.1:27200"))
        #expect(!DashboardAuth.isSameOrigin(origin: nil, fetchSite: "same-site", host: "127.0.0.1:27200"))
        #expect(!DashboardAuth.isSameOrigin(origin: "null", fetchSite: "cross-site", host: "127.0.0.1:27200"))
        #expect(!DashboardAuth.isSameOrigin(origin: "http://127.0.0.1:27200", fetchSite: nil, host: nil))
    }

    @Test("cookies are HttpOnly, SameSite=Strict, under /ui; Secure and Max-Age only when asked")
    func setCookie() {
        let plain = DashboardAuth.setCookie("sluice_session", "v", secure: false)
        #expect(plain.hasPrefix("sluice_session=v;"))
        #expect(plain.contains("HttpOnly"))
        #expect(plain.contains("SameSite=Strict"))
        #expect(plain.contains("Path=/ui"))
        #expect(!plain.contains("Secure"))
        #expect(!plain.contains("Max-Age"))

        let expiring = DashboardAuth.setCookie("sluice_flash", "", secure: true, maxAge: 0)
        #expect(expiring.contains("; Secure"))
        #expect(expiring.contains("Max-Age=0"))
    }

    @Test("cookie(_:in:) finds a value among several, and nil when absent")
    func cookieLookup() {
        let header = "a=1; sluice_session=abc; sluice_flash=ab==; b=2"
        #expect(DashboardAuth.cookie("sluice_session", in: header) == "abc")
        #expect(DashboardAuth.cookie("sluice_flash", in: header) == "ab==")
        #expect(DashboardAuth.cookie("b", in: header) == "2")
        #expect(DashboardAuth.cookie("sluice", in: header) == nil)
        #expect(DashboardAuth.cookie("missing", in: header) == nil)
        #expect(DashboardAuth.cookie("a", in: nil) == nil)
    }
}

@Suite("Dashboard: formats")
struct FormatTests {
    /// 2026-12-05T01:02:00Z.
    static let sample = Date(timeIntervalSince1970: 1_796_432_520)

    @Test("durations in ms, s, m and h")
    func durations() {
        #expect(Format.duration(0.25) == "250 ms")
        #expect(Format.duration(1.5) == "1.5 s")
        #expect(Format.duration(125) == "2 m 5 s")
        #expect(Format.duration(7200) == "2 h 0 m")
        #expect(Format.duration(90_000) == "1 d 1 h")
        #expect(Format.duration(-1) == "—")
    }

    @Test("times are UTC with a space and a Z; no time is a dash")
    func times() {
        #expect(Format.time(nil) == "—")
        #expect(Format.time(Date(timeIntervalSince1970: 0)) == "1970-01-01 00:00:00Z")
        #expect(Format.time(Self.sample) == "2026-12-05 01:02:00Z")
    }

    @Test("a datetime-local input is read as UTC, and written back the same")
    func inputs() {
        #expect(Format.parseInput("2026-12-05T01:02") == Self.sample)
        #expect(Format.parseInput(" 2026-12-05T01:02:00Z ") == Self.sample)
        #expect(Format.parseInput("") == nil)
        #expect(Format.parseInput("   ") == nil)
        #expect(Format.parseInput("yesterday") == nil)
        #expect(Format.localInput(Self.sample) == "2026-12-05T01:02")
        #expect(Format.localInput(nil) == "")
    }
}

@Suite("Dashboard: helpers")
struct DashboardHelperTests {
    @Test("a flash notice survives its cookie, text and kind")
    func flashRoundTrip() throws {
        let notice = Layout.Notice(text: "Replayed 3; ünïcode & <b>", isError: true)
        let encoded = Dashboard.encodeFlash(notice)
        let decoded = try #require(Dashboard.decodeFlash(encoded))
        #expect(decoded.text == notice.text)
        #expect(decoded.isError)

        let info = try #require(Dashboard.decodeFlash(Dashboard.encodeFlash(Layout.Notice(text: "ok", isError: false))))
        #expect(info.text == "ok")
        #expect(!info.isError)
    }

    @Test("an encoded flash is cookie-safe: only base64url characters")
    func flashCookieSafe() {
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
        // Long enough, and with enough variety, to make + / and = appear in plain base64.
        let text = String(repeating: "?>~ünïcode; a=b, c/d ", count: 10)
        let encoded = Dashboard.encodeFlash(Layout.Notice(text: text, isError: false))
        #expect(!encoded.isEmpty)
        #expect(encoded.allSatisfy { allowed.contains($0) })
    }

    @Test("garbage does not decode to a notice")
    func flashGarbage() {
        #expect(Dashboard.decodeFlash("") == nil)
        #expect(Dashboard.decodeFlash("!!!!") == nil)
        #expect(Dashboard.decodeFlash("%%%; =") == nil)
        _ = Dashboard.decodeFlash("_-_-_")  // must not crash, whatever it gives
    }

    @Test("the trace id of a traceparent")
    func traceID() {
        #expect(Dashboard.traceID("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(Dashboard.traceID("garbage") == nil)
        #expect(Dashboard.traceID("00-4bf92f35-00f067aa0ba902b7-01") == nil)
    }

    @Test("pretty JSON: {} for an empty object; objects indented with sorted keys")
    func pretty() throws {
        #expect(Dashboard.pretty([:]) == "{}")
        let text = Dashboard.pretty(["b": ["c": "x"], "a": "y/z"])
        #expect(text.contains("\n"))
        let a = try #require(text.range(of: "\"a\""))
        let b = try #require(text.range(of: "\"b\""))
        #expect(a.lowerBound < b.lowerBound)
        let lines = text.split(separator: "\n")
        let aLine = try #require(lines.first { $0.contains("\"a\"") })
        let cLine = try #require(lines.first { $0.contains("\"c\"") })
        #expect(aLine.hasPrefix(" "), "keys are indented")
        #expect(cLine.prefix { $0 == " " }.count > aLine.prefix { $0 == " " }.count, "nested keys are indented further")
        #expect(text.contains("y/z"), "slashes are not escaped")
    }

    @Test("kind text names the task, map task and delay")
    func kindText() {
        #expect(Dashboard.kindText(.task(TaskSpec(name: "charge.card"))) == "task charge.card")
        #expect(Dashboard.kindText(.join(.all)) == "join")
        #expect(Dashboard.kindText(.delay(milliseconds: 1500)) == "wait 1.5 s")
    }
}

@Suite("Dashboard: run graph input")
struct RunNodeTests {
    @Test("a branch gives then/else edges, not duplicated by after; plain after edges have no label")
    func branchEdges() {
        let steps = [
            WorkflowStep(id: "a", .task(TaskSpec(name: "t"))),
            WorkflowStep.branch("check", after: ["a"], if: "input.ok", then: ["yes"], else: ["no"]),
            WorkflowStep(id: "yes", after: ["check"], .task(TaskSpec(name: "t"))),
            WorkflowStep(id: "no", after: ["check"], .task(TaskSpec(name: "t"))),
            WorkflowStep(id: "end", after: ["yes", "no"], .join(.all)),
        ]
        let edges = makeDashboard().edges(steps)
        #expect(edges == [
            GraphEdge(from: "check", to: "yes", label: "then"),
            GraphEdge(from: "check", to: "no", label: "else"),
            GraphEdge(from: "a", to: "check", label: nil),
            GraphEdge(from: "yes", to: "end", label: nil),
            GraphEdge(from: "no", to: "end", label: nil),
        ])
        #expect(edges.filter { $0.from == "check" && $0.to == "yes" }.count == 1)
    }

    @Test("a branch target that does not depend on the branch still gets its labelled edge")
    func branchEdgeWithoutAfter() {
        let steps = [
            WorkflowStep.branch("check", if: "input.ok", then: ["yes"]),
            WorkflowStep(id: "yes", .task(TaskSpec(name: "t"))),
        ]
        #expect(makeDashboard().edges(steps) == [GraphEdge(from: "check", to: "yes", label: "then")])
    }

    @Test("a map node counts its elements")
    func mapProgress() {
        let step = WorkflowStep.map("m", over: "input.items", task: "t")
        var state = stepState(.running)
        state.elements = ([.succeeded, .succeeded, .failed, .running, .waiting] as [StepState.Status]).map(element)
        let node = makeDashboard().node(step, run: run(["m": state]), now: Date())
        #expect(node.progress == GraphNode.Progress(succeeded: 2, failed: 1, running: 1, total: 5))
        #expect(node.state == "running")
        #expect(node.detail == "map t")
        #expect(node.href == "#step-m")
    }

    @Test("a started sub-workflow step links to its child run; one not started links to its details")
    func childLink() throws {
        let step = WorkflowStep.workflow("child", "fulfil")
        let started = run(["child": stepState(.running, startedAt: Date(timeIntervalSince1970: 10))])
        let childID = try #require(started.childRunID(step: "child"))
        let node = makeDashboard().node(step, run: started, now: Date())
        #expect(node.href == "/ui/runs/" + childID)
        #expect(node.href == "/ui/runs/r1.child.0")
        #expect(node.progress == nil)

        let waiting = makeDashboard().node(step, run: run(["child": stepState(.waiting)]), now: Date())
        #expect(waiting.href == "#step-child")
    }

    @Test("a step whose compensation runs is compensating; one compensated is compensated")
    func compensating() {
        let step = WorkflowStep.task("charge", "charge.card").compensated(by: "refund")
        var state = stepState(.succeeded, startedAt: Date(timeIntervalSince1970: 10))
        #expect(makeDashboard().node(step, run: run(["charge": state]), now: Date()).state == "succeeded")
        state.compensation = StepCompensation(status: .running)
        #expect(makeDashboard().node(step, run: run(["charge": state]), now: Date()).state == "compensating")
        state.compensation = StepCompensation(status: .succeeded)
        #expect(makeDashboard().node(step, run: run(["charge": state]), now: Date()).state == "compensated")
    }

    @Test("a step the run does not know yet is waiting")
    func unknownStep() {
        let node = makeDashboard().node(WorkflowStep.task("x", "t"), run: run([:]), now: Date())
        #expect(node.state == "waiting")
        #expect(node.detail == "task t")
    }
}

@Suite("Dashboard: small charts")
struct ChartTests {
    @Test("a sparkline needs two values")
    func sparklineTooFew() {
        #expect(Dashboard.sparkline([], label: "ready").description.isEmpty)
        #expect(Dashboard.sparkline([3], label: "ready").description.isEmpty)
        #expect(Dashboard.sparkline([nil, 3, nil], label: "ready").description.isEmpty)
    }

    @Test("a sparkline draws a polyline and names its label, escaped")
    func sparkline() {
        let svg = Dashboard.sparkline([0, 5, nil, 10], label: "ready & <x>").description
        #expect(svg.contains("<polyline"))
        #expect(svg.contains("ready &amp; &lt;x&gt;: last 10.0, peak 10.0"))
        // Four slots over 100 px: the gap at index 2 is left out.
        #expect(svg.contains("points=\"0.0,21.0 33.3,11.0 100.0,1.0\""))
    }

    @Test("a bar has a 120 px track and rects proportional to the counts")
    func bar() {
        let svg = Dashboard.bar(succeeded: 1, failed: 1, running: 2, total: 8).description
        #expect(svg.contains("<rect class=\"b-track\" width=\"120\""))
        #expect(svg.contains("class=\"b-succeeded\" x=\"0.0\" y=\"0\" width=\"15.0\""))
        #expect(svg.contains("class=\"b-failed\" x=\"15.0\" y=\"0\" width=\"15.0\""))
        #expect(svg.contains("class=\"b-running\" x=\"30.0\" y=\"0\" width=\"30.0\""))
        #expect(svg.contains("aria-label=\"1 done, 1 failed, 2 running of 8\""))
    }

    @Test("a bar leaves out empty parts, and is empty for no total")
    func barEdges() {
        let svg = Dashboard.bar(succeeded: 3, failed: 0, running: 0, total: 3).description
        #expect(svg.contains("class=\"b-succeeded\" x=\"0.0\" y=\"0\" width=\"120.0\""))
        #expect(!svg.contains("b-failed"))
        #expect(!svg.contains("b-running"))
        #expect(Dashboard.bar(succeeded: 0, failed: 0, running: 0, total: 0).description.isEmpty)
    }
}
