import Foundation
#if canImport(Glibc)
import Glibc
#endif
import SluiceSpawn
import SluiceTesting

/// Headless Chromium driven through chromedriver (W3C WebDriver over HTTP).
///
/// A hand-written client rather than Selenium or Playwright: chromedriver
/// (Debian's chromium-driver) speaks plain JSON over HTTP, so the dozen
/// commands the dashboard tests need are a few lines each (over
/// ``LoopbackHTTP``: URLSession on Linux refuses chromedriver's headers),
/// and the tests need no Python, Node or extra Swift package. The driver is
/// started the way the tests start every process (``ChildProcess``, output
/// to a log file whose tail goes into failure messages).
///
/// Each command is one bounded HTTP request; the only waits are the
/// polling loops (every 100 ms, bounded and stretched by ``TestTime``) of
/// ``waitFor(_:seconds:)``, ``waitUntil(_:seconds:_:)`` and
/// ``acceptDialog(seconds:)``. Call ``quit()`` when done (it never throws).
final class Browser: Sendable {
    static let driverPath = "/usr/bin/chromedriver"
    static let browserPath = "/usr/bin/chromium"
    /// The key W3C WebDriver names an element reference with.
    static let elementKey = "element-6066-11e4-a52e-4f735466cecf"

    /// Whether chromedriver and Chromium are installed (for a test's `.enabled(if:)`).
    static var isAvailable: Bool {
        FileManager.default.isExecutableFile(atPath: driverPath) && FileManager.default.isExecutableFile(atPath: browserPath)
    }

    /// An element of the current page, as WebDriver refers to it.
    struct Element: Sendable, Hashable {
        let id: String
        /// The element as a script argument of ``Browser/execute(_:_:)``.
        var reference: [String: String] { [Browser.elementKey: id] }
    }

    /// chromedriver's base URL, http://127.0.0.1:PORT.
    let base: String
    let session: String
    let process: ChildProcess
    /// The browser's fresh profile directory.
    let profile: URL
    /// chromedriver's output.
    let log: URL

    private init(base: String, session: String, process: ChildProcess, profile: URL, log: URL) {
        self.base = base
        self.session = session
        self.process = process
        self.profile = profile
        self.log = log
    }

    /// Starts chromedriver on a free port, waits until it is ready, and
    /// opens a session with a headless Chromium of `width` × `height`.
    static func start(width: Int = 1280, height: Int = 1000) async throws -> Browser {
        guard FileManager.default.isExecutableFile(atPath: driverPath) else {
            throw WebDriverError(command: "start", error: "not installed",
                                 message: "\(driverPath) is missing; install chromium-driver: scripts/install-deps")
        }
        guard FileManager.default.isExecutableFile(atPath: browserPath) else {
            throw WebDriverError(command: "start", error: "not installed",
                                 message: "\(browserPath) is missing; install chromium (and chromium-driver): scripts/install-deps")
        }
        let port = CoordinatorProcess.freePort()
        let base = "http://127.0.0.1:\(port)"
        let temporary = FileManager.default.temporaryDirectory
        let profile = temporary.appendingPathComponent("sluice-chromium-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: profile, withIntermediateDirectories: true)
        let log = temporary.appendingPathComponent("sluice-chromedriver-\(UUID().uuidString).log")
        let process: ChildProcess
        do {
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            defer { try? handle.close() }
            // Its own process group: stopping it reaches the browsers it started too.
            process = try ChildProcess(executable: driverPath, arguments: ["--port=\(port)"],
                                       environment: ProcessInfo.processInfo.environment,
                                       standardOutput: .descriptor(handle.fileDescriptor),
                                       standardError: .descriptor(handle.fileDescriptor),
                                       processGroup: true)
        } catch {
            try? FileManager.default.removeItem(at: profile)
            try? FileManager.default.removeItem(at: log)
            throw error
        }
        do {
            try await waitUntilReady(base: base, process: process, log: log)
            let options: [String: Any] = [
                "binary": browserPath,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=\(width),\(height)", "--user-data-dir=\(profile.path)"] as [String],
            ]
            let capabilities: [String: Any] = [
                "browserName": "chrome",
                "goog:chromeOptions": options,
                "unhandledPromptBehavior": "ignore",
            ]
            let alwaysMatch: [String: Any] = ["alwaysMatch": capabilities]
            let body = try json(["capabilities": alwaysMatch], "POST /session")
            let data = try await send(base: base, "POST", "/session", body, process: process, log: log)
            guard let value = try decode(data, "POST /session") as? [String: Any], let session = value["sessionId"] as? String else {
                throw WebDriverError(command: "POST /session", error: "bad response",
                                     message: "no sessionId in " + String(decoding: data.prefix(500), as: UTF8.self))
            }
            return Browser(base: base, session: session, process: process, profile: profile, log: log)
        } catch {
            await stop(process)
            try? FileManager.default.removeItem(at: profile)
            try? FileManager.default.removeItem(at: log)
            throw error
        }
    }

    // MARK: - Pages

    /// Navigates to `url` (returns once the page has loaded).
    func open(_ url: String) async throws {
        try await command("POST", "url", Self.json(["url": url], "POST url"))
    }

    var currentURL: String {
        get async throws { try Self.string(try await command("GET", "url"), "GET url") }
    }

    var title: String {
        get async throws { try Self.string(try await command("GET", "title"), "GET title") }
    }

    /// The page's HTML source.
    func source() async throws -> String {
        try Self.string(try await command("GET", "source"), "GET source")
    }

    // MARK: - Elements

    /// The first element matching a CSS selector, or nil.
    func find(_ css: String) async throws -> Element? {
        let data: Data
        do {
            data = try await command("POST", "element", Self.json(["using": "css selector", "value": css], "POST element"))
        } catch let error as WebDriverError where error.error == "no such element" {
            return nil
        }
        let value = try Self.decode(data, "POST element \(css)")
        guard let element = Self.element(value) else {
            throw WebDriverError(command: "POST element \(css)", error: "bad response", message: "not an element: \(String(describing: value))")
        }
        return element
    }

    /// Every element matching a CSS selector (none: empty).
    func findAll(_ css: String) async throws -> [Element] {
        let data = try await command("POST", "elements", Self.json(["using": "css selector", "value": css], "POST elements"))
        let value = try Self.decode(data, "POST elements \(css)")
        guard let list = value as? [Any] else {
            throw WebDriverError(command: "POST elements \(css)", error: "bad response", message: "not a list: \(String(describing: value))")
        }
        return list.compactMap { Self.element($0) }
    }

    /// Waits (polling every 100 ms, bounded by `seconds` stretched by
    /// ``TestTime``) until `css` matches; throws ``TimedOut`` naming the
    /// selector and the page's URL otherwise.
    @discardableResult
    func waitFor(_ css: String, seconds: Double = 30) async throws -> Element {
        let deadline = TestTime.deadline(seconds)
        while true {
            if let element = try await find(css) { return element }
            if ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let url = (try? await currentURL) ?? "(unknown)"
        throw TimedOut(what: "an element matching \(css) on \(url)", seconds: TestTime.scaled(seconds))
    }

    /// Waits (polling every 100 ms, bounded) until `condition` holds for
    /// the page source; throws ``TimedOut`` with `what` and the page's URL otherwise.
    func waitUntil(_ what: String, seconds: Double = 30, _ condition: @Sendable (String) -> Bool) async throws {
        let deadline = TestTime.deadline(seconds)
        while true {
            let page = try await source()
            if condition(page) { return }
            if ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let url = (try? await currentURL) ?? "(unknown)"
        throw TimedOut(what: "\(what) (on \(url))", seconds: TestTime.scaled(seconds))
    }

    func click(_ element: Element) async throws {
        try await command("POST", "element/\(element.id)/click", Self.json([:], "POST click"))
    }

    /// Clears the field, then types `text` into it.
    func type(_ text: String, into element: Element) async throws {
        try await command("POST", "element/\(element.id)/clear", Self.json([:], "POST clear"))
        try await command("POST", "element/\(element.id)/value", Self.json(["text": text], "POST value"))
    }

    /// The element's rendered text.
    func text(of element: Element) async throws -> String {
        try Self.string(try await command("GET", "element/\(element.id)/text"), "GET element text")
    }

    /// The element's attribute (or property) `name`; nil if it has none.
    func attribute(_ name: String, of element: Element) async throws -> String? {
        let encoded = name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? name
        let value = try Self.decode(try await command("GET", "element/\(element.id)/attribute/\(encoded)"), "GET attribute \(name)")
        if let text = value as? String { return text }
        return value.map { String(describing: $0) }
    }

    // MARK: - Dialogs, scripts, window

    /// Accepts a confirm()/alert() dialog, waiting (polling every 100 ms,
    /// bounded) for one to open; returns its text.
    @discardableResult
    func acceptDialog(seconds: Double = 10) async throws -> String {
        let deadline = TestTime.deadline(seconds)
        while true {
            do {
                let text = try Self.string(try await command("GET", "alert/text"), "GET alert/text")
                try await command("POST", "alert/accept", Self.json([:], "POST alert/accept"))
                return text
            } catch let error as WebDriverError where error.error == "no such alert" {
                if ContinuousClock.now >= deadline { break }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let url = (try? await currentURL) ?? "(unknown)"
        throw TimedOut(what: "a dialog to accept on \(url)", seconds: TestTime.scaled(seconds))
    }

    /// Runs JavaScript (a function body: `return ...`; `arguments[i]` are
    /// `args`, which must be JSON values, elements as ``Element/reference``);
    /// returns its result as JSONSerialization decodes it (nil for null/undefined).
    @discardableResult
    func execute(_ script: String, _ args: [Any] = []) async throws -> Any? {
        let body = try Self.json(["script": script, "args": args], "POST execute/sync")
        return try Self.decode(try await command("POST", "execute/sync", body), "POST execute/sync")
    }

    /// Saves a PNG screenshot of the viewport to `path` (creating its directory).
    func screenshot(to path: String) async throws {
        let text = try Self.string(try await command("GET", "screenshot"), "GET screenshot")
        guard let png = Data(base64Encoded: text) else {
            throw WebDriverError(command: "GET screenshot", error: "bad response", message: "the screenshot is not base64")
        }
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try png.write(to: url)
    }

    /// Sets the window size.
    func resize(width: Int, height: Int) async throws {
        try await command("POST", "window/rect", Self.json(["width": width, "height": height], "POST window/rect"))
    }

    /// The last lines chromedriver wrote (for failure messages).
    func logTail(lines: Int = 25) -> String { Self.tail(of: log, lines: lines) }

    /// Ends the session, stops chromedriver (SIGTERM, then SIGKILL if it
    /// lingers) and removes the profile and log. Never throws.
    func quit() async {
        if process.isRunning {
            _ = try? await LoopbackHTTP.send(port: Self.port(of: base), method: "DELETE", path: "/session/\(session)", body: nil,
                                             timeout: TestTime.scaled(30))
        }
        await Self.stop(process)
        try? FileManager.default.removeItem(at: profile)
        try? FileManager.default.removeItem(at: log)
    }

    // MARK: - The protocol

    /// Sends a command to the session (`path` relative to /session/{id});
    /// the whole response on success.
    @discardableResult
    private func command(_ method: String, _ path: String, _ body: Data? = nil) async throws -> Data {
        try await Self.send(base: base, method, "/session/\(session)/\(path)", body, process: process, log: log)
    }

    /// One bounded request; a WebDriver error (HTTP 4xx/5xx) or no answer throws ``WebDriverError``.
    private static func send(base: String, _ method: String, _ path: String, _ body: Data?,
                             process: ChildProcess, log: URL) async throws -> Data {
        let name = "\(method) \(path)"
        let answer: (status: Int, body: Data)
        do {
            answer = try await LoopbackHTTP.send(port: port(of: base), method: method, path: path, body: body, timeout: TestTime.scaled(60))
        } catch {
            var message = "\(error)"
            if let ended = process.termination { message += " (chromedriver \(ended); its log ends:\n\(tail(of: log)))" }
            throw WebDriverError(command: name, error: "no answer", message: message)
        }
        let (status, data) = answer
        guard (200..<300).contains(status) else {
            let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
            let value = object?["value"] as? [String: Any]
            let code = value?["error"] as? String ?? "HTTP \(status)"
            let message = (value?["message"] as? String).map { $0.components(separatedBy: "\n  (Session info:")[0] }
                ?? String(decoding: data.prefix(500), as: UTF8.self)
            throw WebDriverError(command: name, error: code, message: message)
        }
        return data
    }

    /// The port of a `http://127.0.0.1:PORT` base.
    private static func port(of base: String) -> Int { Int(base.split(separator: ":").last ?? "") ?? 0 }

    /// Polls GET /status until chromedriver says it is ready (bounded).
    private static func waitUntilReady(base: String, process: ChildProcess, log: URL) async throws {
        let seconds = 30.0
        let deadline = TestTime.deadline(seconds)
        while ContinuousClock.now < deadline {
            if let ended = process.termination {
                throw WebDriverError(command: "start", error: "chromedriver ended",
                                     message: "chromedriver \(ended); its log ends:\n\(tail(of: log))")
            }
            if let answer = try? await LoopbackHTTP.send(port: port(of: base), method: "GET", path: "/status", body: nil, timeout: 5),
               let object = (try? JSONSerialization.jsonObject(with: answer.body)) as? [String: Any],
               let value = object["value"] as? [String: Any], isTrue(value["ready"]) {
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TimedOut(what: "chromedriver at \(base) to be ready (its log ends:\n\(tail(of: log)))", seconds: TestTime.scaled(seconds))
    }

    /// SIGTERM to chromedriver's group, then (after a bounded wait) SIGKILL.
    private static func stop(_ process: ChildProcess) async {
        process.signal(SIGTERM)
        let deadline = TestTime.deadline(10)
        while process.isRunning && ContinuousClock.now < deadline {
            do { try await Task.sleep(for: .milliseconds(100)) } catch { break }
        }
        if process.isRunning {
            process.signal(SIGKILL)
        }
        _ = await process.wait()
        // Browsers it started and that outlived it are still in its group.
        _ = kill(-process.pid, SIGKILL)
    }

    private static func json(_ object: [String: Any], _ command: String) throws -> Data {
        guard JSONSerialization.isValidJSONObject(object) else {
            throw WebDriverError(command: command, error: "invalid argument", message: "not JSON: \(object)")
        }
        return try JSONSerialization.data(withJSONObject: object)
    }

    /// A response's `value` (nil for null).
    private static func decode(_ data: Data, _ command: String) throws -> Any? {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw WebDriverError(command: command, error: "bad response", message: String(decoding: data.prefix(500), as: UTF8.self))
        }
        guard let value = object["value"], !(value is NSNull) else { return nil }
        return value
    }

    private static func string(_ data: Data, _ command: String) throws -> String {
        let value = try decode(data, command)
        guard let text = value as? String else {
            throw WebDriverError(command: command, error: "bad response", message: "not a string: \(String(describing: value))")
        }
        return text
    }

    private static func element(_ value: Any?) -> Element? {
        ((value as? [String: Any])?[elementKey] as? String).map { Element(id: $0) }
    }

    private static func isTrue(_ value: Any?) -> Bool {
        if let flag = value as? Bool { return flag }
        if let number = value as? NSNumber { return number.boolValue }
        return false
    }

    private static func tail(of log: URL, lines: Int = 25) -> String {
        guard let text = try? String(contentsOf: log, encoding: .utf8) else { return "(no log)" }
        let last = text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
        return last.isEmpty ? "(empty log)" : last
    }
}

/// A WebDriver command that failed: the command, W3C's error code
/// ("no such element", "unexpected alert open", ...) and chromedriver's message.
struct WebDriverError: Error, CustomStringConvertible {
    var command: String
    var error: String
    var message: String

    var description: String { "WebDriver \(command): \(error): \(message)" }
}
