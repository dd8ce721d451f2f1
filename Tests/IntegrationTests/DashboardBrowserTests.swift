import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SluiceAPI
import SluiceCore
import SluiceTesting
import SluiceWorkflow
import Testing

/// The dashboard (`/ui`) in a real browser: headless Chromium driven through
/// chromedriver, against a coordinator process (with a token), a worker
/// process and the broker. Screenshots of every page go to
/// `.sluice/test-output/dashboard/`.
@Suite("The dashboard in headless Chromium: sign in, a run's graph, retry a step, replay a dead task")
struct DashboardBrowserTests {
    static let definition = """
        name: shop
        steps:
          - id: prepare
            task: shop.prepare
          - id: fanout
            after: [prepare]
            map:
              over: input.items
              task: shop.pack
              arguments: { item: "${item}" }
              join: tolerate
              maxAttempts: 1
          - id: charge
            after: [prepare]
            task: shop.charge
            maxAttempts: 1
          - id: report
            after: [fanout, charge]
            join: all
        """

    /// The worker's command: `shop.charge` fails until `gate` exists, a
    /// `shop.pack` of "bad" always fails, `shop.fragile` fails until
    /// `gate2` exists; every task that succeeds is logged.
    static func script(log: String, gate: String, gate2: String) -> String {
        """
        args=$(cat)
        case "$SLUICE_TASK_NAME" in
          shop.charge) [ -e '\(gate)' ] || { echo "card declined" >&2; exit 3; } ;;
          shop.pack) case "$args" in *bad*) echo "cannot pack a bad item" >&2; exit 3 ;; esac ;;
          shop.fragile) [ -e '\(gate2)' ] || { echo "not yet" >&2; exit 3; } ;;
        esac
        echo "$SLUICE_TASK_NAME $SLUICE_TASK_ID ok" >> '\(log)'
        echo '{"ok": true}'
        """
    }

    static let outputFolder = FileManager.default.currentDirectoryPath + "/.sluice/test-output/dashboard"

    @Test("sign in, see the run's nodes in their final colours and the map's progress, retry the failed step and watch it succeed, replay a dead task; every page screenshotted")
    func dashboard() async throws {
        let h = try await TaskHarness.make()
        let token = "dashboard-test-\(UUID().uuidString)"
        let files = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-ui-\(UUID().uuidString)").path
        let (log, gate, gate2) = (files + ".log", files + ".gate", files + ".gate2")
        defer { for f in [log, gate, gate2] { try? FileManager.default.removeItem(atPath: f) } }
        let store = "sqlite:" + files + ".sqlite"
        let coordinator = try CoordinatorProcess.start(h, store: store, extra: ["--http-token", token, "--queue-metrics-interval", "1s"])
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        let worker = try SluiceBinary.start(CoordinatorProcessTests.workerArguments(h)
                                            + ["--exec", Self.script(log: log, gate: gate, gate2: gate2)])
        defer { SluiceBinary.stopIfRunning(worker) }
        try await coordinator.waitUntilHealthy()
        let api = CoordinatorClient(base: URL(string: coordinator.api)!, token: token, timeout: TestTime.scaled(30))
        #expect(try await api.registerWorkflow(yaml: Self.definition).name == "shop")
        let input: JSONValue = ["items": ["a", "b", "bad", "c", "d"]]
        let runID = try await api.startRun(StartRunRequest(workflow: "shop", input: input)).runID
        // The charge fails for good (one attempt): the run fails, the map tolerates its bad element.
        let failed = try await Self.waitForRun(api, runID, .failed)
        #expect(failed.steps["charge"]?.status == .failed)
        #expect(failed.steps["fanout"]?.status == .succeeded)

        try FileManager.default.createDirectory(atPath: Self.outputFolder, withIntermediateDirectories: true)
        let browser = try await Browser.start()
        do {
            try await Self.walk(browser, coordinator: coordinator, api: api, runID: runID, token: token, log: log, gate: gate, gate2: gate2)
        } catch {
            await browser.quit()
            throw error
        }
        await browser.quit()
    }

    static func walk(_ browser: Browser, coordinator: CoordinatorProcess, api: CoordinatorClient, runID: String, token: String,
                     log: String, gate: String, gate2: String) async throws {
        let base = coordinator.api
        let runPath = "/ui/runs/\(runID)"
        func shot(_ name: String) async throws { try await browser.screenshot(to: "\(outputFolder)/\(name).png") }

        // Signing in: a wrong token is refused, the right one leads to the page asked for.
        try await browser.open(base + runPath)
        let field = try await browser.waitFor("input#token")
        #expect(try await browser.currentURL.contains("/ui/login"))
        try await shot("01-sign-in")
        try await browser.type("not-the-token", into: field)
        try await browser.click(try await browser.waitFor("form button[type=submit]"))
        try await browser.waitUntil("the refusal of a wrong token") { $0.contains("not the coordinator's token") }
        try await browser.type(token, into: try await browser.waitFor("input#token"))
        try await browser.click(try await browser.waitFor("form button[type=submit]"))
        try await browser.waitFor("svg.run-graph")
        #expect(try await browser.currentURL.hasSuffix(runPath))

        // The failed run: every node in its colour, the map's progress (4 done, 1 failed of 5).
        let failedPage = try await browser.source()
        for (step, state) in [("prepare", "succeeded"), ("fanout", "succeeded"), ("charge", "failed"), ("report", "failed")] {
            #expect(failedPage.contains("class=\"node state-\(state)\" id=\"node-\(step)\""), "node \(step) should be \(state)")
        }
        #expect(failedPage.contains("map shop.pack · 5/5"))
        #expect(failedPage.contains("class=\"bar-failed\""))
        #expect(failedPage.contains("id=\"run-status\">failed"))
        try await shot("02-run-failed")

        // Retry the charge from its step's details (a confirmation dialog first); it succeeds now.
        #expect(FileManager.default.createFile(atPath: gate, contents: Data()))
        try await browser.click(try await browser.waitFor("#step-charge summary"))
        try await browser.click(try await browser.waitFor("#step-charge button[type=submit]"))
        let question = try await browser.acceptDialog()
        #expect(question.contains("Retry step charge"))
        try await browser.waitUntil("the notice of the retry") { $0.contains("Retrying step charge") }
        // The page updates itself (no reload) until the run completes.
        try await browser.waitUntil("the run page to show the run completed", seconds: 90) { $0.contains("id=\"run-status\">completed") }
        let donePage = try await browser.source()
        for step in ["prepare", "fanout", "charge", "report"] {
            #expect(donePage.contains("class=\"node state-succeeded\" id=\"node-\(step)\""), "node \(step) should be succeeded")
        }
        #expect(try await api.run(runID).status == .completed)
        #expect(donePage.contains("<td><b>retry</b></td><td>charge</td>"), "the run's commands list the retry")
        try await browser.execute("window.scrollTo(0, 0); return true;")
        try await shot("03-run-completed")

        // The list of runs shows it, with counts by status.
        try await browser.open(base + "/ui/runs")
        try await browser.waitFor("a[href='\(runPath)']")
        #expect(try await browser.source().contains("<span class=\"badge s-completed\">completed</span>"))
        try await shot("04-runs")

        // A task dead for good, replayed from the page once it can succeed.
        let dead = try await api.enqueue(EnqueueTaskRequest(name: "shop.fragile", queue: "wf", maxAttempts: 1)).id
        _ = try await eventually(60, "the fragile task to be dead") {
            try await api.deadTasks(queue: "wf").tasks.contains { $0.id == dead } ? true : nil
        }
        try await browser.open(base + "/ui/dead/wf")
        try await browser.waitFor("details[data-task='\(dead)']")
        #expect(try await browser.source().contains("the command exited with status 3"))
        try await shot("05-dead-letters")
        #expect(FileManager.default.createFile(atPath: gate2, contents: Data()))
        try await browser.click(try await browser.waitFor("details[data-task='\(dead)'] summary"))
        try await shot("06-dead-letter-open")
        try await browser.click(try await browser.waitFor("details[data-task='\(dead)'] button[type=submit]"))
        #expect(try await browser.acceptDialog().contains("Put task \(dead) back"))
        try await browser.waitUntil("the notice of the replay") { $0.contains("Replayed 1 task(s) to wf.") }
        _ = try await eventually(60, "the replayed task to succeed") {
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("shop.fragile \(dead) ok") ? true : nil
        }
        #expect(try await api.deadTasks(queue: "wf").tasks.contains { $0.id == dead } == false)
        try await shot("07-dead-letter-replayed")

        // Queues and workers, from the coordinator's samples.
        _ = try await eventually(60, "the coordinator to sample queue wf and hear the worker") {
            let queues = try? await api.queues()
            let workers = try? await api.workers()
            return queues?.queues.contains { $0.queue == "wf" } == true && workers?.workers.isEmpty == false ? true : nil
        }
        try await browser.open(base + "/ui/queues")
        try await browser.waitFor("tr#queue-wf")
        try await shot("08-queues")
        try await browser.open(base + "/ui/workers")
        try await browser.waitFor("tbody tr[id^='worker-']")
        try await shot("09-workers")

        // A schedule, paused from its page.
        _ = try await api.putSchedule(ScheduleSpec(id: "nightly-report", cron: "0 3 * * *", action: .workflow(name: "shop", version: nil, input: ["items": []])))
        try await browser.open(base + "/ui/schedules")
        try await browser.click(try await browser.waitFor("tr#schedule-nightly-report form[action$='/pause'] button"))
        try await browser.waitUntil("the schedule to show as paused") { $0.contains("<span class=\"badge s-paused\">paused</span>") }
        #expect(try await api.schedules().first { $0.spec.id == "nightly-report" }?.spec.paused == true)
        try await shot("11-schedules")

        // A phone's width: the page does not scroll sideways (the graph scrolls in its card).
        try await browser.resize(width: 390, height: 844)
        try await browser.open(base + runPath)
        try await browser.waitFor("svg.run-graph")
        let overflow = try await browser.execute("return document.documentElement.scrollWidth - window.innerWidth;") as? Int
        #expect((overflow ?? 1) <= 0, "the page is \(overflow ?? -1) px wider than a phone's screen")
        try await shot("10-run-phone")
    }

    @Test("sign-in and form checks: pages need the session cookie, actions need the form token, the same origin and a confirmation; cookies are HttpOnly and SameSite")
    func guards() async throws {
        let h = try await TaskHarness.make()
        let token = "guard-\(UUID().uuidString)"
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-ui-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: store, extra: ["--http-token", token])
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        try await coordinator.waitUntilHealthy()
        let api = CoordinatorClient(base: URL(string: coordinator.api)!, token: token, timeout: TestTime.scaled(30))
        _ = try await api.registerWorkflow(yaml: "name: waiting\nsteps:\n  - id: wait\n    signal: go\n")
        let runID = try await api.startRun(StartRunRequest(workflow: "waiting")).runID
        _ = try await Self.waitForRun(api, runID, .running)
        let port = coordinator.port
        func http(_ method: String, _ path: String, headers: [(String, String)] = [], form: String? = nil) async throws -> LoopbackHTTP.Response {
            try await LoopbackHTTP.request(port: port, method: method, path: path, headers: headers, body: form.map { Data($0.utf8) },
                                           contentType: "application/x-www-form-urlencoded", timeout: TestTime.scaled(30))
        }

        // Without a session: to the sign-in page, which says where to go next; the API itself still wants the bearer token.
        let anonymous = try await http("GET", "/ui/runs/\(runID)")
        #expect(anonymous.status == 303)
        #expect(anonymous.header("Location") == "/ui/login?next=%2Fui%2Fruns%2F\(runID)")
        #expect(try await http("GET", "/v1/runs").status == 401)
        #expect(try await http("POST", "/ui/runs/\(runID)/pause", form: "confirmed=1").status == 303)
        #expect(try await api.run(runID).status == .running, "an action without a session changed nothing")

        // Signing in: a wrong token is refused; the right one sets a cookie that is not the token.
        #expect(try await http("POST", "/ui/login", form: "token=wrong&next=%2Fui%2Fruns").status == 401)
        let signedIn = try await http("POST", "/ui/login", form: "token=\(token)&next=%2F%2Fevil.example")
        #expect(signedIn.status == 303)
        #expect(signedIn.header("Location") == "/ui/runs", "an outside next is not followed")
        let cookie = try #require(signedIn.header("Set-Cookie"))
        #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/ui"))
        #expect(!cookie.contains("Secure"), "plain HTTP: no Secure flag")
        #expect(!cookie.contains(token), "the cookie does not hold the token")
        let secure = try await http("POST", "/ui/login", headers: [("X-Forwarded-Proto", "https")], form: "token=\(token)")
        #expect(secure.header("Set-Cookie")?.contains("; Secure") == true, "behind TLS the cookie is Secure")
        let session = [("Cookie", String(cookie.prefix { $0 != ";" }))]

        // A page: the security headers, and the form token its forms carry.
        let page = try await http("GET", "/ui/runs/\(runID)", headers: session)
        #expect(page.status == 200)
        #expect(page.header("Content-Security-Policy")?.contains("script-src 'self'") == true)
        #expect(page.header("X-Frame-Options") == "DENY")
        let formToken = try #require(page.text.firstMatch(of: /name="csrf" value="([0-9a-f]{64})"/)?.1).description

        // Actions: no form token, another site's origin, or no confirmation change nothing.
        #expect(try await http("POST", "/ui/runs/\(runID)/cancel", headers: session, form: "confirmed=1").status == 403)
        #expect(try await http("POST", "/ui/runs/\(runID)/cancel", headers: session + [("Origin", "http://evil.example")],
                               form: "csrf=\(formToken)&confirmed=1").status == 403)
        #expect(try await http("POST", "/ui/runs/\(runID)/cancel", headers: session + [("Sec-Fetch-Site", "cross-site")],
                               form: "csrf=\(formToken)&confirmed=1").status == 403)
        let asked = try await http("POST", "/ui/runs/\(runID)/cancel", headers: session, form: "csrf=\(formToken)&back=%2Fui%2Fruns")
        #expect(asked.status == 200 && asked.text.contains("Are you sure?"), "without the script, a page asks first")
        #expect(try await api.run(runID).status == .running)

        // A genuine, confirmed action from the same origin goes through, with a notice on the next page.
        let cancelled = try await http("POST", "/ui/runs/\(runID)/cancel",
                                       headers: session + [("Origin", "http://127.0.0.1:\(port)")], form: "csrf=\(formToken)&confirmed=1")
        #expect(cancelled.status == 303)
        #expect(cancelled.header("Location") == "/ui/runs/\(runID)")
        _ = try await Self.waitForRun(api, runID, .cancelled)
        let flash = try #require(cancelled.all("Set-Cookie").first { $0.hasPrefix("sluice_flash=") })
        let next = try await http("GET", "/ui/runs/\(runID)", headers: session + [("Cookie", String(flash.prefix { $0 != ";" }))])
        #expect(next.text.contains("Cancelled run \(runID)."))

        // Signing out ends the session cookie.
        let out = try await http("POST", "/ui/logout", headers: session, form: "csrf=\(formToken)")
        #expect(out.all("Set-Cookie").contains { $0.hasPrefix("sluice_session=;") && $0.contains("Max-Age=0") })
    }

    @Test("without a token (loopback), web pages of other sites and other host names are refused, on the API and the dashboard alike; plain clients are not")
    func loopbackGuard() async throws {
        let h = try await TaskHarness.make()
        let store = "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("sluice-ui-\(UUID().uuidString).sqlite").path
        let coordinator = try CoordinatorProcess.start(h, store: store)
        defer { SluiceBinary.stopIfRunning(coordinator.process) }
        try await coordinator.waitUntilHealthy()
        _ = try await coordinator.client.putSchedule(ScheduleSpec(id: "guarded", cron: "0 3 * * *", action: .task(name: "x", queue: nil, arguments: [:])))
        let port = coordinator.port
        func post(_ path: String, _ headers: [(String, String)]) async throws -> Int {
            try await LoopbackHTTP.request(port: port, method: "POST", path: path, headers: headers, body: Data(), timeout: TestTime.scaled(30)).status
        }
        // A page of another site (a form, or a no-cors fetch), and a rebound name: refused.
        #expect(try await post("/v1/schedules/guarded/pause", [("Origin", "http://evil.example")]) == 401)
        #expect(try await post("/v1/schedules/guarded/pause", [("Origin", "null")]) == 401)
        #expect(try await post("/v1/schedules/guarded/pause", [("Sec-Fetch-Site", "cross-site")]) == 401)
        #expect(try await post("/ui/schedules/guarded/pause", [("Sec-Fetch-Site", "cross-site")]) == 401)
        let rebound = try await LoopbackHTTP.request(port: port, method: "GET", path: "/v1/runs", headers: [("Host", "evil.example:\(port)")],
                                                     body: nil, timeout: TestTime.scaled(30))
        #expect(rebound.status == 401, "a page of a name rebound to 127.0.0.1 reads nothing: \(rebound.text.prefix(200))")
        #expect(try await coordinator.client.schedules().first { $0.spec.id == "guarded" }?.spec.paused == false, "nothing was paused")
        // The same page's own origin, and clients that are not browsers, go through.
        #expect(try await post("/v1/schedules/guarded/pause", [("Origin", "http://127.0.0.1:\(port)")]) == 200)
        #expect(try await post("/v1/schedules/guarded/resume", []) == 200)
        let localhost = try await LoopbackHTTP.request(port: port, method: "GET", path: "/ui/runs", headers: [("Host", "localhost:\(port)")],
                                                       body: nil, timeout: TestTime.scaled(30))
        #expect(localhost.status == 200)
    }

    static func waitForRun(_ api: CoordinatorClient, _ id: String, _ status: RunState.Status, seconds: Double = 90) async throws -> RunState {
        try await eventually(seconds, "run \(id) to be \(status.rawValue)") {
            guard let run = try? await api.run(id), run.status == status else { return nil }
            return run
        }
    }
}
