import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SluiceCoordinator
import SluiceCore
import SluiceWorkflow
import SluiceAPI
import SluiceWorkerProcess

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
          sluice workflow signal RUN approved --data '{"by": "ana"}'
        """,
        subcommands: [Register.self, Definitions.self, Delete.self, Start.self, Status.self, List.self, Pause.self, Resume.self,
                      Cancel.self, Retry.self, Signal.self])

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
            let result = try await api.client().registerWorkflow(yaml: String(decoding: bytes, as: UTF8.self))
            print("registered \(result.name) version \(result.version)")
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
            var all: [DefinitionSummary] = []
            repeat {
                let page = try await client.workflows(after: cursor, limit: min(1000, limit - all.count))
                all += page.workflows
                cursor = page.nextCursor
            } while cursor != nil && all.count < limit
            if json { return try printAPIJSON(all) }
            if all.isEmpty { print("no workflows registered"); return }
            print(pad("NAME", 30) + pad("VERSION", 9) + pad("BYTES", 10) + "REGISTERED")
            for w in all {
                print(pad(w.name, 30) + pad("\(w.version)", 9) + pad("\(w.bytes)", 10) + APICoding.formatDate(w.createdAt))
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a registered definition version.",
            discussion: "Refused while runs of that version are pending, running, paused, failed or compensating (a failed run can be retried).")
        @Argument(help: "The workflow's name.") var name: String
        @Argument(help: "The version.") var version: Int
        @OptionGroup var api: APIOptions

        func run() async throws {
            _ = try await api.client().deleteWorkflow(name: name, version: version)
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
            do { inputValue = try JSONValue.parse(try readArguments(input, option: "--input")) } catch let e as ValidationError { throw e } catch {
                throw ValidationError("--input is not valid JSON")
            }
            let request = StartRunRequest(workflow: name, version: version, input: inputValue, idempotencyKey: key,
                                          traceparent: traceparent)
            let run = try await api.client().startRun(request)
            if json { try printAPIJSON(run) } else { print(run.runID) }
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
                let state = try await client.run(run)
                if json {
                    try printAPIJSON(state)
                } else {
                    if watch { print("\u{1B}[2J\u{1B}[H", terminator: "") }
                    print(describe(state))
                }
                guard watch, !state.status.isFinal else { return }
                try await Task.sleep(for: .seconds(1))
            }
        }

        func describe(_ s: RunState) -> String {
            var lines = ["run \(s.runID)  \(s.workflow) v\(s.version)  \(s.status.rawValue)"]
            if let error = s.error { lines.append("error: \(error)") }
            if s.status == .pending, let slot = s.slot {
                lines.append("waiting for a concurrency slot: at most \(slot.limit) active run\(slot.limit == 1 ? "" : "s") of \(s.workflow)"
                             + (slot.key.isEmpty ? "" : " with key '\(slot.key)'"))
            }
            if let c = s.compensation {
                let progress = c.order.map { "\(c.done) of \($0.count) steps compensated" + ($0.isEmpty ? "" : " (\($0.joined(separator: ", ")))") }
                    ?? "waiting for compensable steps that still run"
                lines.append("compensation (the run \(c.cause.rawValue)): \(progress)" + (c.error.map { "; failed: \($0)" } ?? ""))
            }
            lines.append("")
            lines.append(pad("STEP", 20) + pad("STATE", 11) + pad("ATTEMPTS", 9) + "OUTPUT / ERROR")
            for (id, step) in s.steps.sorted(by: { $0.key < $1.key }) {
                var detail = step.error ?? step.output.map { $0 == .null ? "" : $0.jsonText } ?? ""
                if step.status == .running, let progress = step.progress {
                    detail = String(format: "%.0f%%", progress * 100) + (step.progressMessage.map { " \($0)" } ?? "")
                }
                if let elements = step.elements {
                    let done = elements.filter { $0.status == .succeeded }.count
                    detail = "\(done)/\(elements.count) elements; " + detail
                }
                if let undo = step.compensation {
                    let elements = undo.done.map { " \($0) elements" } ?? ""
                    detail = "compensation \(undo.status.rawValue)\(elements)" + (undo.error.map { ": \($0)" } ?? "") + "; " + detail
                }
                lines.append(pad(id, 20) + pad(step.status.rawValue, 11) + pad("\(step.attempts)", 9) + String(detail.prefix(100)))
            }
            if let o = s.output, o != .null { lines.append(""); lines.append("output: \(o.jsonText.prefix(400))") }
            return lines.joined(separator: "\n")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List runs, newest first.")
        @Option(help: "Only runs of this workflow.") var workflow: String?
        @Option(help: "Only runs in this state: pending, running, paused, completed, failed, cancelled, compensating, compensated, compensation_failed.") var state: String?
        @Option(help: "Only runs created at or after this time (ISO 8601, or seconds since the epoch).") var after: String?
        @Option(help: "Only runs created before this time.") var before: String?
        @Option(help: "How many (1-1000).") var limit: Int = 50
        @Option(help: "Continue from the cursor a previous page printed.") var cursor: String?
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var api: APIOptions

        /// A time as ISO 8601 or seconds since the epoch.
        static func time(_ text: String, _ option: String) throws -> Date {
            if let date = APICoding.parseDate(text) { return date }
            if let seconds = Double(text), seconds.isFinite { return Date(timeIntervalSince1970: seconds) }
            throw ValidationError("\(option) must be an ISO 8601 time or seconds since the epoch, got '\(text)'")
        }

        func validate() throws {
            if let after { _ = try Self.time(after, "--after") }
            if let before { _ = try Self.time(before, "--before") }
            if let state, RunState.Status(rawValue: state) == nil {
                throw ValidationError("--state must be one of \(RunState.Status.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard (1...1000).contains(limit) else { throw ValidationError("--limit must be from 1 to 1000") }
        }

        func run() async throws {
            let query = RunQuery(workflow: workflow, status: state.flatMap(RunState.Status.init(rawValue:)),
                                 createdAfter: try after.map { try Self.time($0, "--after") },
                                 createdBefore: try before.map { try Self.time($0, "--before") }, limit: limit, cursor: cursor)
            let page = try await api.client().runs(query)
            if json { return try printAPIJSON(page) }
            print(pad("RUN", 38) + pad("WORKFLOW", 20) + pad("STATE", 20) + "CREATED")
            for r in page.runs {
                print(pad(r.runID, 38) + pad(r.workflow, 20) + pad(r.status.rawValue, 20) + APICoding.formatDate(r.createdAt))
            }
            if page.runs.isEmpty { print("(no runs)") }
            if let next = page.nextCursor { print("more: --cursor \(next)") }
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pause a run: no new steps start; running ones finish.")
        @Argument(help: "The run id.") var run: String
        @OptionGroup var api: APIOptions
        func run() async throws { report(run, try await api.client().pause(run: run)) }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Resume a paused run.")
        @Argument(help: "The run id.") var run: String
        @OptionGroup var api: APIOptions
        func run() async throws { report(run, try await api.client().resume(run: run)) }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a run for good (later results of its steps are ignored; completed steps with a compensation are undone first).")
        @Argument(help: "The run id.") var run: String
        @Option(help: "Why (kept as the run's error).") var reason: String = "cancelled by hand"
        @OptionGroup var api: APIOptions
        func run() async throws { report(run, try await api.client().cancel(run: run, reason: reason)) }
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
                let state = try await client.run(run)
                guard let failed = state.failedStep else {
                    throw CLIError("run \(run) has no failed step; name one with --step")
                }
                stepID = failed
            }
            report(run, try await api.client().retry(run: run, step: stepID!, rerun: rerun))
        }
    }
}

extension WorkflowCommand {
    struct Signal: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send a signal to a run: a signal step waiting for its name takes it (or one that starts later).",
            discussion: """
            The step's output is the signal's data. A signal sent before any step waits for it is \
            kept for the first that does. Give --id when you may send the same signal again (a \
            retried webhook): a run applies each id once. An approval is a signal sent by a person:
              sluice workflow signal RUN approved --data '{"by": "ana", "ok": true}'
            """)
        @Argument(help: "The run id.") var run: String
        @Argument(help: "The signal's name (1 to 128 of letters, digits, '_', '-' and '.').") var name: String
        @Option(help: "The signal's data: JSON, @file, or - for standard input (default: null).") var data: String?
        @Option(help: "The signal's id: a second signal with the same id applies once (default: a new one).") var id: String?
        @Flag(help: "Print the answer as JSON.") var json = false
        @OptionGroup var api: APIOptions

        func validate() throws {
            guard WorkflowDefinition.isValidSignalName(name) else {
                throw ValidationError("the signal name must be 1 to 128 of letters, digits, '_', '-' and '.'")
            }
            if let id, id.isEmpty || id.utf8.count > 200 { throw ValidationError("--id must be 1 to 200 bytes") }
        }

        func run() async throws {
            var value: JSONValue?
            if let data {
                do { value = try JSONValue.parse(try readArguments(data, option: "--data")) } catch let e as ValidationError { throw e } catch {
                    throw ValidationError("--data is not valid JSON")
                }
            }
            let answer = try await api.client().signal(run: run, name: name, data: value, signalID: id)
            if json { return try printAPIJSON(answer) }
            let what = switch answer.kept {
            case true?: "kept for a step that waits for it later"
            case false?: "taken by a waiting step"
            case nil: "accepted"
            }
            print("run \(run): signal \(name) (id \(answer.id)) \(what); run \(answer.status.rawValue)")
        }
    }
}

/// Prints the state a run command left the run in.
private func report(_ run: String, _ state: RunState) {
    print("run \(run): \(state.status.rawValue)")
}

func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? String(s.prefix(width - 1)) + " " : s + String(repeating: " ", count: width - s.count)
}
