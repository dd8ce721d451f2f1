import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SluiceCore
import SluiceWorkflow

/// Where the coordinator's API is, for every `sluice workflow` command.
struct APIOptions: ParsableArguments {
    @Option(help: "The coordinator's API (default: $SLUICE_API, else http://127.0.0.1:27200).")
    var api: String?
    @Option(help: "Bearer token for the API (default: $SLUICE_API_TOKEN).")
    var token: String?

    func client() throws -> APIClient {
        let text = api ?? ProcessInfo.processInfo.environment["SLUICE_API"] ?? "http://127.0.0.1:27200"
        guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https", url.host != nil else {
            throw ValidationError("--api must be an http:// or https:// URL, got '\(text)'")
        }
        return APIClient(base: url, token: token ?? ProcessInfo.processInfo.environment["SLUICE_API_TOKEN"])
    }
}

/// A small client for the coordinator's HTTP API.
struct APIClient {
    var base: URL
    var token: String?

    /// Sends a request; returns the JSON body, or throws the API's error message.
    func send(_ method: String, _ path: String, query: [(String, String)] = [], json body: JSONValue? = nil, raw: [UInt8]? = nil,
              contentType: String = "application/json") async throws -> JSONValue {
        var url = base.appendingPathComponent(path)
        if !query.isEmpty, var components = URLComponents(url: url, resolvingAgainstBaseURL: false) {
            components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) }
            // '+' means a space to many servers: encode it too.
            components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
            url = components.url ?? url
        }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.timeoutInterval = 30
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let bytes = raw ?? body?.jsonBytes {
            request.httpBody = Data(bytes)
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        }
        let data: Data, response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw CLIError("cannot reach the coordinator at \(base): \(error.localizedDescription). Is `sluice coordinator` running? (--api)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let value = (try? JSONValue.parse(Array(data))) ?? .null
        guard (200..<300).contains(status) else {
            let message = value["error"]?["message"].flatMap { if case .string(let s) = $0 { s } else { nil } }
            throw CLIError("the coordinator said \(status): \(message ?? String(decoding: data, as: UTF8.self))")
        }
        return value
    }
}

struct WorkflowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workflow",
        abstract: "Register workflow definitions and start, watch and steer runs (through the coordinator's API).",
        discussion: """
        Examples:
          sluice workflow register orders.yaml
          sluice workflow start orders --input '{"id": 42}' --key order-42
          sluice workflow status RUN --watch
          sluice workflow list --state failed --json
          sluice workflow retry RUN --step charge
        """,
        subcommands: [Register.self, Definitions.self, Delete.self, Start.self, Status.self, List.self, Pause.self, Resume.self,
                      Cancel.self, Retry.self])

    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a definition from a YAML or JSON file (validated first).")
        @Argument(help: "The definition file (.yaml, .yml or .json; - for standard input).") var file: String
        @OptionGroup var api: APIOptions

        func run() async throws {
            let bytes: [UInt8]
            if file == "-" {
                bytes = Array(FileHandle.standardInput.readDataToEndOfFile())
            } else {
                guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
                bytes = Array(data)
            }
            // Validate here first: the error then names the file.
            do {
                _ = try WorkflowDefinition.decode(yaml: String(decoding: bytes, as: UTF8.self))
            } catch let error as WorkflowError {
                throw CLIError("\(file): \(error)")
            }
            let result = try await api.client().send("POST", "v1/workflows", raw: bytes, contentType: "application/yaml")
            print("registered \(result["name"].map(text) ?? "?") version \(result["version"].map(text) ?? "?")")
        }
    }

    struct Definitions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List registered definitions (names, versions, sizes).")
        @Option(help: "Show at most this many.") var limit: Int = 1000
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var api: APIOptions

        func run() async throws {
            let client = try api.client()
            var cursor: String?
            var all: [JSONValue] = []
            repeat {
                var query = [("limit", "\(min(1000, limit - all.count))")]
                if let cursor { query.append(("cursor", cursor)) }
                let page = try await client.send("GET", "v1/workflows", query: query)
                if case .array(let items)? = page["workflows"] { all += items }
                cursor = page["nextCursor"].flatMap { $0 == .null ? nil : text($0) }
            } while cursor != nil && all.count < limit
            if json { print(JSONValue.array(all).jsonText); return }
            if all.isEmpty { print("no workflows registered"); return }
            print(pad("NAME", 30) + pad("VERSION", 9) + pad("BYTES", 10) + "REGISTERED")
            for w in all {
                print(pad(w["name"].map(text) ?? "?", 30) + pad(w["version"].map(text) ?? "?", 9) + pad(w["bytes"].map(text) ?? "?", 10)
                      + (w["createdAt"].map(text) ?? ""))
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a registered definition version.",
            discussion: "Refused while runs of that version are pending, running, paused or failed (a failed run can be retried).")
        @Argument(help: "The workflow's name.") var name: String
        @Argument(help: "The version.") var version: Int
        @OptionGroup var api: APIOptions

        func run() async throws {
            _ = try await api.client().send("DELETE", "v1/workflows/\(name)/\(version)")
            print("deleted \(name) version \(version)")
        }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a run; prints its id.")
        @Argument(help: "The workflow's name.") var name: String
        @Option(help: "Input as JSON, @file or - (standard input).") var input: String = "{}"
        @Option(help: "A specific version (default: the newest).") var version: Int?
        @Option(help: "Idempotency key: starting again with the same key returns the same run.") var key: String?
        @Option(help: "W3C trace context (00-<trace id>-<span id>-<flags>): every step task joins this trace.")
        var traceparent: String?
        @Flag(help: "Print the run as JSON.") var json = false
        @OptionGroup var api: APIOptions

        func validate() throws {
            if let traceparent, TraceParent(traceparent) == nil {
                throw ValidationError("--traceparent must be a W3C trace context: 00-<32 hex>-<16 hex>-<2 hex>")
            }
        }

        func run() async throws {
            let inputValue: JSONValue
            do { inputValue = try JSONValue.parse(try readArguments(input)) } catch let e as ValidationError { throw e } catch {
                throw ValidationError("--input is not valid JSON")
            }
            var body: [String: JSONValue] = ["workflow": .string(name), "input": inputValue]
            if let version { body["version"] = .number(Double(version)) }
            if let key { body["idempotencyKey"] = .string(key) }
            if let traceparent { body["traceparent"] = .string(traceparent) }
            let run = try await api.client().send("POST", "v1/runs", json: .object(body))
            if json { print(run.jsonText) } else { print(run["runID"].map(text) ?? "?") }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a run and every step (state, attempts, times, output or error).")
        @Argument(help: "The run id.") var run: String
        @Flag(help: "Refresh every second until the run finishes.") var watch = false
        @Flag(help: "Print the run as JSON.") var json = false
        @OptionGroup var api: APIOptions

        func run() async throws {
            let client = try api.client()
            while true {
                let state = try await client.send("GET", "v1/runs/\(run)")
                if json {
                    print(state.jsonText)
                } else {
                    if watch { print("\u{1B}[2J\u{1B}[H", terminator: "") }
                    print(describe(state))
                }
                let status = state["status"].map(text) ?? ""
                guard watch, !["completed", "failed", "cancelled"].contains(status) else { return }
                try await Task.sleep(for: .seconds(1))
            }
        }

        func describe(_ s: JSONValue) -> String {
            var lines = ["run \(s["runID"].map(text) ?? "?")  \(s["workflow"].map(text) ?? "?") v\(s["version"].map(text) ?? "?")  \(s["status"].map(text) ?? "?")"]
            if let e = s["error"], e != .null { lines.append("error: \(text(e))") }
            lines.append("")
            lines.append(pad("STEP", 20) + pad("STATE", 11) + pad("ATTEMPTS", 9) + "OUTPUT / ERROR")
            if case .object(let steps)? = s["steps"] {
                for (id, step) in steps.sorted(by: { $0.key < $1.key }) {
                    var detail = step["error"].flatMap { $0 == .null ? nil : text($0) } ?? step["output"].map { $0 == .null ? "" : $0.jsonText } ?? ""
                    if case .array(let elements)? = step["elements"] {
                        let done = elements.filter { $0["status"].map(text) == "succeeded" }.count
                        detail = "\(done)/\(elements.count) elements; " + detail
                    }
                    lines.append(pad(id, 20) + pad(step["status"].map(text) ?? "?", 11) + pad(step["attempts"].map(text) ?? "0", 9)
                                 + String(detail.prefix(80)))
                }
            }
            if let o = s["output"], o != .null { lines.append(""); lines.append("output: \(o.jsonText.prefix(400))") }
            return lines.joined(separator: "\n")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List runs, newest first.")
        @Option(help: "Only runs of this workflow.") var workflow: String?
        @Option(help: "Only runs in this state: pending, running, paused, completed, failed, cancelled.") var state: String?
        @Option(help: "Only runs created at or after this time (ISO 8601, or seconds since the epoch).") var after: String?
        @Option(help: "Only runs created before this time.") var before: String?
        @Option(help: "How many (1-1000).") var limit: Int = 50
        @Option(help: "Continue from the cursor a previous page printed.") var cursor: String?
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var api: APIOptions

        func validate() throws {
            if let state, RunState.Status(rawValue: state) == nil {
                throw ValidationError("--state must be one of \(RunState.Status.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard (1...1000).contains(limit) else { throw ValidationError("--limit must be from 1 to 1000") }
        }

        func run() async throws {
            var query = [("limit", "\(limit)")]
            if let workflow { query.append(("workflow", workflow)) }
            if let state { query.append(("status", state)) }
            if let after { query.append(("after", after)) }
            if let before { query.append(("before", before)) }
            if let cursor { query.append(("cursor", cursor)) }
            let page = try await api.client().send("GET", "v1/runs", query: query)
            if json { print(page.jsonText); return }
            print(pad("RUN", 38) + pad("WORKFLOW", 20) + pad("STATE", 11) + "CREATED")
            if case .array(let runs)? = page["runs"] {
                for r in runs {
                    print(pad(r["runID"].map(text) ?? "", 38) + pad(r["workflow"].map(text) ?? "", 20) + pad(r["status"].map(text) ?? "", 11)
                          + (r["createdAt"].map(text) ?? ""))
                }
                if runs.isEmpty { print("(no runs)") }
            }
            if let next = page["nextCursor"], next != .null { print("more: --cursor \(text(next))") }
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pause a run: no new steps start; running ones finish.")
        @Argument(help: "The run id.") var run: String
        @OptionGroup var api: APIOptions
        func run() async throws { try await command(api, run, "pause") }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Resume a paused run.")
        @Argument(help: "The run id.") var run: String
        @OptionGroup var api: APIOptions
        func run() async throws { try await command(api, run, "resume") }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a run for good (later results of its steps are ignored).")
        @Argument(help: "The run id.") var run: String
        @Option(help: "Why (kept as the run's error).") var reason: String = "cancelled by hand"
        @OptionGroup var api: APIOptions
        func run() async throws { try await command(api, run, "cancel", ["reason": .string(reason)]) }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run a failed step again (--rerun: it and every step after it).")
        @Argument(help: "The run id.") var run: String
        @Option(help: "The step (default: the step that failed the run).") var step: String?
        @Flag(help: "Also run again the steps after it that succeeded.") var rerun = false
        @OptionGroup var api: APIOptions

        func run() async throws {
            let client = try api.client()
            var stepID = step
            if stepID == nil {
                let state = try await client.send("GET", "v1/runs/\(run)")
                guard let failed = state["failedStep"], failed != .null else {
                    throw CLIError("run \(run) has no failed step; name one with --step")
                }
                stepID = text(failed)
            }
            try await command(api, run, "retry", ["step": .string(stepID!), "rerun": .bool(rerun)])
        }
    }
}

private func command(_ api: APIOptions, _ run: String, _ verb: String, _ body: [String: JSONValue] = [:]) async throws {
    let state = try await api.client().send("POST", "v1/runs/\(run)/\(verb)", json: .object(body))
    print("run \(run): \(state["status"].map(text) ?? "?")")
}

/// A JSON value as plain text (strings without quotes).
func text(_ value: JSONValue) -> String {
    if case .string(let s) = value { return s }
    return value.jsonText
}

func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? String(s.prefix(width - 1)) + " " : s + String(repeating: " ", count: width - s.count)
}
