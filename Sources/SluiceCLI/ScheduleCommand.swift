import ArgumentParser
import Foundation
import SluiceCoordinator
import SluiceWorkflow
import SluiceAPI

struct ScheduleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule",
        abstract: "Cron schedules that start a workflow or enqueue a task (kept by the coordinator).",
        discussion: """
        Cron has 5 fields: minute hour day-of-month month day-of-week (names like mon or jan allowed).
        A fire missed while no coordinator ran happens once when one is back (--misfire once), or is
        dropped if more than a minute late (--misfire skip). A fire never happens twice.

        Examples:
          sluice schedule add nightly-report --cron "0 3 * * *" --tz Europe/Paris --workflow report --input '{"days": 1}'
          sluice schedule add cleanup --cron "*/15 * * * *" --task cleanup.tmp --queue maintenance
          sluice schedule list
          sluice schedule remove cleanup
        """,
        subcommands: [Add.self, List.self, Pause.self, Resume.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add (or replace) a schedule.")
        @Argument(help: "The schedule's id.") var id: String
        @Option(help: "5-field cron expression.") var cron: String
        @Option(help: "IANA time zone for the expression.") var tz: String = "UTC"
        @Option(help: "Start this workflow at each fire.") var workflow: String?
        @Option(help: "The workflow's version (default: the newest at each fire).") var version: Int?
        @Option(help: "The workflow's input as JSON, @file or -.") var input: String = "{}"
        @Option(help: "Enqueue this task at each fire.") var task: String?
        @Option(help: "The task's queue (default: the coordinator's default queue).") var queue: String?
        @Option(help: "The task's arguments as JSON, @file or -.") var args: String = "{}"
        @Option(help: "once or skip.") var misfire: String = "once"
        @OptionGroup var api: APIOptions

        func validate() throws {
            guard (workflow == nil) != (task == nil) else { throw ValidationError("give exactly one of --workflow and --task") }
            guard ScheduleSpec.Misfire(rawValue: misfire) != nil else { throw ValidationError("--misfire must be once or skip") }
            do { _ = try CronExpression(cron) } catch { throw ValidationError("--cron: \(error.message)") }
        }

        func run() async throws {
            let action: ScheduleSpec.Action
            if let workflow {
                action = .workflow(name: workflow, version: version, input: try json(input, "--input"))
            } else {
                action = .task(name: task!, queue: queue, arguments: try json(args, "--args"))
            }
            let spec = ScheduleSpec(id: id, cron: cron, timeZone: tz, action: action, misfire: ScheduleSpec.Misfire(rawValue: misfire)!)
            let result = try await api.client().putSchedule(spec)
            print("schedule \(id): next fire \(result.nextFireAt.map(APICoding.formatDate) ?? "none (paused)")")
        }

        func json(_ spec: String, _ option: String) throws -> JSONValue {
            do { return try JSONValue.parse(try readArguments(spec, option: option)) } catch let e as ValidationError { throw e } catch {
                throw ValidationError("\(option) is not valid JSON")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List schedules and their next fire times.")
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var api: APIOptions

        func run() async throws {
            let all = try await api.client().schedules()
            if json { return try printAPIJSON(all) }
            print(pad("ID", 24) + pad("CRON", 18) + pad("ZONE", 16) + pad("NEXT", 22) + "ACTION")
            guard !all.isEmpty else { print("(no schedules)"); return }
            for item in all {
                let spec = item.spec
                let action = switch spec.action {
                case .workflow(let name, _, _): "workflow " + name
                case .task(let name, _, _): "task " + name
                }
                print(pad(spec.id, 24) + pad(spec.cron, 18) + pad(spec.timeZone, 16) + pad(item.nextFireAt.map(APICoding.formatDate) ?? "paused", 22) + action)
            }
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pause a schedule: it does not fire until resumed.")
        @Argument(help: "The schedule's id.") var id: String
        @OptionGroup var api: APIOptions

        func run() async throws {
            _ = try await api.client().pauseSchedule(id)
            print("paused schedule \(id)")
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Resume a paused schedule.",
            discussion: "It fires next at its first time after now: times that passed while it was paused are not fired.")
        @Argument(help: "The schedule's id.") var id: String
        @OptionGroup var api: APIOptions

        func run() async throws {
            let view = try await api.client().resumeSchedule(id)
            print("resumed schedule \(id): next fire \(view.nextFireAt.map(APICoding.formatDate) ?? "none")")
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a schedule.")
        @Argument(help: "The schedule's id.") var id: String
        @OptionGroup var api: APIOptions

        func run() async throws {
            _ = try await api.client().deleteSchedule(id)
            print("removed schedule \(id)")
        }
    }
}
