public import Hummingbird
import Foundation
import HTTPTypes
import NIOCore
public import SluiceAPI

/// The web dashboard, served by `sluice coordinator` under `/ui`: runs (as
/// lists and as graphs), queues and workers, dead letters and schedules, with
/// the actions an operator needs.
///
/// It is a client of the coordinator's own API (``CoordinatorClient``): every
/// page shows what the API answers and every button calls an API route, so
/// the dashboard can never show or do what the API cannot. Pages are HTML
/// rendered here; a few lines of script add live updates and confirmation
/// dialogs, and everything reads without it.
public struct Dashboard: Sendable {
    let client: CoordinatorClient
    let auth: DashboardAuth
    /// Seconds between live updates of list and run pages.
    let refreshSeconds: Int
    /// Where a trace id links to (`{traceId}` replaced), e.g. a Jaeger or Tempo page; nil: no link.
    let traceURL: String?

    /// - Parameters:
    ///   - client: the API this dashboard shows (normally its own coordinator's, on loopback).
    ///   - token: the API's token: when set, a browser signs in with it first.
    ///   - traceURL: a trace viewer's page for a trace, `{traceId}` standing for its id.
    public init(client: CoordinatorClient, token: String?, refreshSeconds: Int = 5, traceURL: String? = nil) {
        self.client = client
        self.traceURL = traceURL
        auth = DashboardAuth(token: token)
        self.refreshSeconds = max(1, refreshSeconds)
    }

    /// Adds the dashboard's routes (all under `/ui`) to `router`.
    public func register(on router: Router<BasicRequestContext>) {
        router.get("/ui") { _, _ in Self.redirect("/ui/runs") }
        router.get("/ui/static/app.css") { _, _ in Self.asset(Assets.stylesheet, type: "text/css; charset=utf-8") }
        router.get("/ui/static/app.js") { _, _ in Self.asset(Assets.script, type: "text/javascript; charset=utf-8") }
        router.get("/ui/login") { request, _ in signInPage(request, failed: false) }
        router.post("/ui/login") { request, _ in try await signIn(request) }
        router.post("/ui/logout") { request, _ in
            try await act(request, confirm: nil) { _, _ in
                ActionResult(notice: nil, redirect: "/ui/login", cookies: [DashboardAuth.setCookie(DashboardAuth.sessionCookie, "", secure: Self.isSecure(request), maxAge: 0)])
            }
        }

        router.get("/ui/runs") { request, _ in try await view(request) { try await runsPage($0) } }
        router.get("/ui/runs/{id}") { request, context in
            let id = try Self.parameter(context, "id")
            return try await view(request) { try await runPage($0, id: id) }
        }
        let runCommands: [(String, String?)] = [
            ("pause", nil), ("resume", nil), ("cancel", "Cancel this run? Steps still running finish, nothing new starts."),
            ("retry", "Retry this step?"), ("signal", nil),
        ]
        for (command, question) in runCommands {
            router.post("/ui/runs/{id}/\(command)") { request, context in
                let id = try Self.parameter(context, "id")
                return try await act(request, confirm: question) { form, _ in try await runCommand(command, id: id, form: form) }
            }
        }
        router.get("/ui/queues") { request, _ in try await view(request) { try await queuesPage($0) } }
        router.get("/ui/workers") { request, _ in try await view(request) { try await workersPage($0) } }
        router.get("/ui/dead") { request, _ in
            // The index's "open" box leads to the queue's own page.
            if let queue = FormData(encoded: request.uri.query ?? "").nonEmpty("queue") { return Self.redirect("/ui/dead/\(FormData.encode(queue))") }
            return try await view(request) { try await deadIndexPage($0) }
        }
        router.get("/ui/dead/{queue}") { request, context in
            let queue = try Self.parameter(context, "queue")
            return try await view(request) { try await deadQueuePage($0, queue: queue) }
        }
        for (command, question) in [("replay", "Put these dead tasks back on their queue?"), ("purge", "Delete these dead tasks? This cannot be undone.")] {
            router.post("/ui/dead/{queue}/\(command)") { request, context in
                let queue = try Self.parameter(context, "queue")
                return try await act(request, confirm: question) { form, _ in try await deadCommand(command, queue: queue, form: form) }
            }
        }
        router.get("/ui/schedules") { request, _ in try await view(request) { try await schedulesPage($0) } }
        for command in ["pause", "resume"] {
            router.post("/ui/schedules/{id}/\(command)") { request, context in
                let id = try Self.parameter(context, "id")
                return try await act(request, confirm: nil) { _, _ in
                    if command == "pause" { _ = try await client.pauseSchedule(id) } else { _ = try await client.resumeSchedule(id) }
                    return ActionResult(notice: command == "pause" ? "Paused schedule \(id)." : "Resumed schedule \(id).", redirect: "/ui/schedules")
                }
            }
        }
        router.post("/ui/schedules/{id}/delete") { request, context in
            let id = try Self.parameter(context, "id")
            return try await act(request, confirm: "Remove schedule \(id)? It fires no more.") { _, _ in
                _ = try await client.deleteSchedule(id)
                return ActionResult(notice: "Removed schedule \(id).", redirect: "/ui/schedules")
            }
        }
    }

    // MARK: Requests

    /// What a page handler gets: the query, the frame, the notice left by the last action.
    struct PageRequest: Sendable {
        var query: FormData
        var layout: Layout
        var notice: Layout.Notice?
        /// The path and query, for links back here.
        var here: String
    }

    /// Where an action leads.
    struct ActionResult: Sendable {
        var notice: String?
        var isError = false
        var redirect: String
        var cookies: [String] = []
    }

    /// Runs a page handler for a signed-in browser; an API failure becomes an error page.
    func view(_ request: Request, _ render: (PageRequest) async throws -> HTML) async throws -> Response {
        let cookies = request.headers[.cookie]
        let here = request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
        guard auth.isSignedIn(cookieHeader: cookies) else {
            return Self.redirect("/ui/login?next=\(FormData.encode(here))")
        }
        let layout = Layout(signedIn: auth.needsSignIn, formToken: auth.formToken)
        var notice: Layout.Notice?
        var headers = HTTPFields()
        if let flash = DashboardAuth.cookie(DashboardAuth.flashCookie, in: cookies), let decoded = Self.decodeFlash(flash) {
            notice = decoded
            headers.append(HTTPField(name: .setCookie, value: DashboardAuth.setCookie(DashboardAuth.flashCookie, "", secure: Self.isSecure(request), maxAge: 0)))
        }
        let page = PageRequest(query: FormData(encoded: request.uri.query ?? ""), layout: layout, notice: notice, here: here)
        do {
            return Self.html(try await render(page), headers: headers)
        } catch let failure as CoordinatorClient.Failure {
            let status: HTTPResponse.Status
            switch failure.kind {
            case .refused(let code, _): status = [400, 404, 409, 503].contains(code) ? HTTPResponse.Status(code: code) : .badGateway
            case .unreachable, .unexpectedAnswer: status = .badGateway
            }
            let body = layout.page("Error", section: nil, notice: notice, """
                <h1>\(status == .notFound ? "Not found" : "Something went wrong")</h1>
                <div class="card"><p>\(failure.description)</p><p><a href="/ui/runs">Back to the runs</a></p></div>
                """)
            return Self.html(body, status: status, headers: headers)
        } catch let error as DashboardInputError {
            let body = layout.page("Bad request", section: nil, notice: notice, """
                <h1>Bad request</h1><div class="card"><p>\(error.message)</p><p><a href="/ui/runs">Back to the runs</a></p></div>
                """)
            return Self.html(body, status: .badRequest, headers: headers)
        }
    }

    /// Runs an action posted by a form of ours: signed in, same origin,
    /// genuine form, confirmed when it asks for confirmation. Then back to a
    /// page (303), with a notice.
    func act(_ request: Request, confirm question: String?,
             _ perform: (FormData, PageRequest) async throws -> ActionResult) async throws -> Response {
        var request = request
        let secure = Self.isSecure(request)
        guard auth.isSignedIn(cookieHeader: request.headers[.cookie]) else { return Self.redirect("/ui/login") }
        let layout = Layout(signedIn: auth.needsSignIn, formToken: auth.formToken)
        guard DashboardAuth.isSameOrigin(origin: request.headers[.origin], fetchSite: request.headers[HTTPField.Name("Sec-Fetch-Site")!],
                                         host: Self.browserHost(request)) else {
            return Self.html(layout.page("Refused", section: nil, "<h1>Refused</h1><div class=\"card\"><p>\(Self.refusedOrigin(request))</p></div>"),
                             status: .forbidden)
        }
        let body = try await request.collectBody(upTo: 1 << 20)
        let form = FormData(encoded: String(buffer: body))
        guard auth.isGenuine(formToken: form["csrf"]) else {
            return Self.html(layout.page("Refused", section: nil, """
                <h1>This form is out of date</h1><div class="card"><p>The coordinator restarted or the page is old: go back, reload it, and try again.</p></div>
                """), status: .forbidden)
        }
        let here = request.uri.path
        if let question, form["confirmed"] != "1" {
            // Asked again on a page of its own: without the script, no dialog asked.
            let back = Self.back(form)
            let fields = form.pairs.filter { $0.name != "csrf" && $0.name != "confirmed" }
                .map { HTML("<input type=\"hidden\" name=\"\($0.name)\" value=\"\($0.value)\">") }
            return Self.html(layout.page("Confirm", section: nil, """
                <h1>Are you sure?</h1><div class="card"><p>\(question)</p>
                <form method="post" action="\(here)">\(layout.hiddenToken)<input type="hidden" name="confirmed" value="1">\(fields)
                <button type="submit" class="danger">Yes</button> <a href="\(back)">No, go back</a></form></div>
                """))
        }
        let page = PageRequest(query: form, layout: layout, notice: nil, here: here)
        let result: ActionResult
        do {
            result = try await perform(form, page)
        } catch let failure as CoordinatorClient.Failure {
            let back = Self.back(form)
            result = ActionResult(notice: failure.description, isError: true, redirect: back)
        } catch let error as DashboardInputError {
            let back = Self.back(form)
            result = ActionResult(notice: error.message, isError: true, redirect: back)
        }
        var response = Self.redirect(result.redirect)
        for cookie in result.cookies { response.headers.append(HTTPField(name: .setCookie, value: cookie)) }
        if let notice = result.notice {
            response.headers.append(HTTPField(name: .setCookie, value: DashboardAuth.setCookie(
                DashboardAuth.flashCookie, Self.encodeFlash(Layout.Notice(text: notice, isError: result.isError)), secure: secure, maxAge: 60)))
        }
        return response
    }

    /// Where an action's form asked to return: a dashboard page, never elsewhere.
    static func back(_ form: FormData) -> String {
        guard let back = form["back"], back.hasPrefix("/ui/"), !back.contains("\\") else { return "/ui/runs" }
        return back
    }

    /// The host the browser addressed: a TLS proxy in front may pass it in
    /// X-Forwarded-Host (a browser cannot set that header across sites).
    static func browserHost(_ request: Request) -> String? {
        request.headers[HTTPField.Name("X-Forwarded-Host")!] ?? request.head.authority
    }

    static func refusedOrigin(_ request: Request) -> String {
        "This form was sent from another site (Origin \(request.headers[.origin] ?? "none"), to host \(browserHost(request) ?? "none")). "
            + "Behind a proxy, pass the Host header on (nginx: proxy_set_header Host $host) or set X-Forwarded-Host."
    }

    // MARK: Sign-in

    func signInPage(_ request: Request, failed: Bool) -> Response {
        let next = FormData(encoded: request.uri.query ?? "")["next"] ?? "/ui/runs"
        return signInPage(next: next, failed: failed)
    }

    func signInPage(next: String, failed: Bool) -> Response {
        let layout = Layout(signedIn: false, formToken: auth.formToken)
        let error: HTML = failed ? "<p class=\"notice error\" role=\"alert\">That is not the coordinator's token.</p>" : .empty
        let body = layout.page("Sign in", section: nil, """
            <div class="card login"><h1>Sign in</h1>\(error)
            <form method="post" action="/ui/login"><input type="hidden" name="next" value="\(next)">
            <label for="token">The coordinator's API token (<code>SLUICE_API_TOKEN</code>, <code>--http-token-file</code> or <code>--http-token</code>)</label>
            <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
            <button type="submit">Sign in</button></form></div>
            """)
        return Self.html(body, status: failed ? .unauthorized : .ok)
    }

    func signIn(_ request: Request) async throws -> Response {
        var request = request
        guard DashboardAuth.isSameOrigin(origin: request.headers[.origin], fetchSite: request.headers[HTTPField.Name("Sec-Fetch-Site")!],
                                         host: Self.browserHost(request)) else {
            let layout = Layout(signedIn: false, formToken: auth.formToken)
            return Self.html(layout.page("Refused", section: nil, "<h1>Refused</h1><div class=\"card\"><p>\(Self.refusedOrigin(request))</p></div>"),
                             status: .forbidden)
        }
        let form = FormData(encoded: String(buffer: try await request.collectBody(upTo: 64 << 10)))
        var next = form["next"] ?? "/ui/runs"
        // Only back into the dashboard: never an open redirect.
        if !next.hasPrefix("/ui") || next.hasPrefix("//") || next.contains("\\") { next = "/ui/runs" }
        guard auth.accepts(token: form["token"] ?? "") else { return signInPage(next: next, failed: true) }
        var response = Self.redirect(next)
        response.headers.append(HTTPField(name: .setCookie, value: DashboardAuth.setCookie(
            DashboardAuth.sessionCookie, auth.sessionValue, secure: Self.isSecure(request), maxAge: DashboardAuth.sessionSeconds)))
        return response
    }

    // MARK: Responses

    static func html(_ page: HTML, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "text/html; charset=utf-8"
        fields[.cacheControl] = "no-store"
        fields[HTTPField.Name("Content-Security-Policy")!] =
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        fields[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        fields[HTTPField.Name("Referrer-Policy")!] = "same-origin"
        fields[HTTPField.Name("X-Frame-Options")!] = "DENY"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: page.text)))
    }

    static func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store"])
    }

    static func asset(_ text: String, type: String) -> Response {
        Response(status: .ok, headers: [.contentType: type, .cacheControl: "max-age=300",
                                        HTTPField.Name("X-Content-Type-Options")!: "nosniff"],
                 body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// Over TLS as the browser sees it (directly, or through a proxy that says so).
    static func isSecure(_ request: Request) -> Bool {
        request.uri.scheme == .https || request.head.scheme == "https"
            || request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https"
    }

    static func parameter(_ context: BasicRequestContext, _ name: String) throws -> String {
        let raw = try context.parameters.require(name)
        return raw.removingPercentEncoding ?? raw
    }

    /// A notice in a cookie: base64url, a first character for its kind.
    static func encodeFlash(_ notice: Layout.Notice) -> String {
        let text = (notice.isError ? "e" : "i") + String(notice.text.prefix(600))
        return Data(text.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func decodeFlash(_ value: String) -> Layout.Notice? {
        var b64 = value.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b64.count % 4 != 0 { b64 += "=" }
        guard let data = Data(base64Encoded: b64), let text = String(data: data, encoding: .utf8), let kind = text.first else { return nil }
        return Layout.Notice(text: String(text.dropFirst()), isError: kind == "e")
    }
}

/// Input a form sent that the dashboard refuses before calling the API.
struct DashboardInputError: Error {
    var message: String
}
