import Foundation
import SluiceTesting
import Testing
import Yams

/// The deploy/ files parse, and what they say about Sluice matches the CLI:
/// every `sluice` command line parses (`sluice check-args`), the ports in
/// --http and --metrics are the ones the containers expose, SLUICE_*
/// variables are ones the CLI reads, KEDA scales a worker on the queue it
/// consumes, and definitions.json is what `sluice topology export` prints.
@Suite("deploy/ files")
struct DeployFilesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let deploy = root.appendingPathComponent("deploy")

    /// A `sluice` command found in a file.
    struct Command: CustomStringConvertible {
        var file: String
        var arguments: [String]
        /// Ports the container or host exposes for it (nil: not applicable, e.g. systemd).
        var exposedPorts: Set<Int>?
        var description: String { "\(file): sluice \(arguments.joined(separator: " "))" }

        func flagValue(_ name: String) -> String? {
            guard let i = arguments.firstIndex(of: name), i + 1 < arguments.count else { return nil }
            return arguments[i + 1]
        }

        /// Ports of --http and --metrics.
        var listeningPorts: [Int] {
            ["--http", "--metrics"].compactMap { flagValue($0) }.compactMap { $0.split(separator: ":").last.flatMap { Int($0) } }
        }
    }

    static func files(_ ext: String) throws -> [URL] {
        let e = FileManager.default.enumerator(at: deploy, includingPropertiesForKeys: nil)!
        return e.compactMap { $0 as? URL }.filter { $0.pathExtension == ext }.sorted { $0.path < $1.path }
    }

    static func yamlDocuments(_ url: URL) throws -> [[String: Any]] {
        let text = try String(contentsOf: url, encoding: .utf8)
        return try Yams.load_all(yaml: text).compactMap { $0 as? [String: Any] }
    }

    static func sluiceEnvironment() async throws -> Set<String> {
        let (status, output) = try await SluiceBinary.run(["check-args", "--environment"])
        #expect(status == 0)
        return Set(output.split(separator: "\n").map(String.init))
    }

    /// SLUICE_* names in a text.
    static func sluiceNames(in text: String) -> Set<String> {
        let regex = try! NSRegularExpression(pattern: "\\bSLUICE_[A-Z_]+")
        let range = NSRange(text.startIndex..., in: text)
        return Set(regex.matches(in: text, range: range).map { String(text[Range($0.range, in: text)!]) })
    }

    static func ports(_ list: Any?) -> Set<Int> {
        var out: Set<Int> = []
        for item in (list as? [Any]) ?? [] {
            if let n = item as? Int { out.insert(n) }
            if let s = item as? String, let last = s.split(separator: ":").last, let n = Int(last.split(separator: "/")[0]) { out.insert(n) }
            if let map = item as? [String: Any], let n = map["containerPort"] as? Int { out.insert(n) }
        }
        return out
    }

    @Test("every YAML and JSON file parses, and every sluice command in deploy/ matches the CLI")
    func commandsMatchTheCLI() async throws {
        var commands: [Command] = []
        var workerQueues: [String: [String]] = [:]  // Deployment name → queues
        var scaled: [(target: String, queue: String)] = []

        // Compose.
        let composeFiles = try Self.files("yaml").filter { $0.path.contains("/compose/") }
        #expect(!composeFiles.isEmpty)
        for file in composeFiles {
            for doc in try Self.yamlDocuments(file) {
                let services = try #require(doc["services"] as? [String: Any], "\(file.lastPathComponent) has services")
                for (name, value) in services {
                    guard let service = value as? [String: Any], let command = service["command"] as? [String], command.first == "sluice" else { continue }
                    let exposed = Self.ports(service["ports"]).union(Self.ports(service["expose"]))
                    commands.append(Command(file: "\(file.lastPathComponent):\(name)", arguments: Array(command.dropFirst()), exposedPorts: exposed))
                }
            }
        }
        // Kubernetes.
        let kubeFiles = try Self.files("yaml").filter { $0.path.contains("/kubernetes/") }
        #expect(!kubeFiles.isEmpty)
        for file in kubeFiles {
            for doc in try Self.yamlDocuments(file) {
                let kind = doc["kind"] as? String ?? ""
                let name = (doc["metadata"] as? [String: Any])?["name"] as? String ?? ""
                if kind == "ScaledObject" {
                    let spec = doc["spec"] as? [String: Any]
                    let target = (spec?["scaleTargetRef"] as? [String: Any])?["name"] as? String ?? ""
                    for trigger in (spec?["triggers"] as? [[String: Any]]) ?? [] where trigger["type"] as? String == "rabbitmq" {
                        scaled.append((target, (trigger["metadata"] as? [String: Any])?["queueName"] as? String ?? ""))
                    }
                }
                guard ["Deployment", "StatefulSet"].contains(kind),
                      let template = (doc["spec"] as? [String: Any])?["template"] as? [String: Any],
                      let containers = (template["spec"] as? [String: Any])?["containers"] as? [[String: Any]] else { continue }
                for c in containers {
                    guard let command = c["command"] as? [String], command == ["sluice"] else { continue }
                    let arguments = (c["args"] as? [String]) ?? []
                    let cmd = Command(file: "\(file.lastPathComponent):\(name)", arguments: arguments, exposedPorts: Self.ports(c["ports"]))
                    commands.append(cmd)
                    if arguments.first == "worker" {
                        workerQueues[name] = arguments.indices.filter { arguments[$0] == "--queue" && $0 + 1 < arguments.count }.map { arguments[$0 + 1] }
                    }
                }
            }
        }
        // systemd: ExecStart lines; a template's %i is the queue name.
        let units = try Self.files("service")
        #expect(units.count >= 2)
        for unit in units {
            let text = try String(contentsOf: unit, encoding: .utf8)
            var sawExec = false
            for line in text.split(separator: "\n") where line.hasPrefix("ExecStart=") {
                let words = line.dropFirst("ExecStart=".count).split(separator: " ").map { $0.replacingOccurrences(of: "%i", with: "default") }
                #expect(words.first?.hasSuffix("/sluice") == true, "\(unit.lastPathComponent) runs sluice")
                commands.append(Command(file: unit.lastPathComponent, arguments: Array(words.dropFirst()), exposedPorts: nil))
                sawExec = true
            }
            #expect(sawExec, "\(unit.lastPathComponent) has an ExecStart")
            #expect(text.contains("TimeoutStopSec="), "\(unit.lastPathComponent) gives a graceful stop time")
        }

        #expect(commands.filter { $0.arguments.first == "worker" }.count >= 3, "worker commands in systemd, compose and Kubernetes")
        #expect(commands.filter { $0.arguments.first == "coordinator" }.count >= 3)
        for command in commands {
            let (status, output) = try await SluiceBinary.run(["check-args"] + command.arguments)
            #expect(status == 0 && output.hasPrefix("ok"), "\(command) does not parse: \(output)")
            if let exposed = command.exposedPorts {
                for port in command.listeningPorts {
                    #expect(exposed.contains(port), "\(command) listens on \(port), which its container does not expose (\(exposed.sorted()))")
                }
            }
        }

        // KEDA scales a worker Deployment on a queue that worker consumes.
        #expect(!scaled.isEmpty)
        for (target, queue) in scaled {
            let queues = try #require(workerQueues[target], "ScaledObject targets \(target), which runs no sluice worker")
            #expect(queues.map { "sluice.q.\($0)" }.contains(queue), "KEDA watches \(queue) but \(target) consumes \(queues)")
        }

        // Environment variable names.
        let known = try await Self.sluiceEnvironment()
        #expect(known.contains("SLUICE_URL"))
        let enumerator = FileManager.default.enumerator(at: Self.deploy, includingPropertiesForKeys: nil)!
        for case let url as URL in enumerator where !url.hasDirectoryPath {
            guard let text = try? String(contentsOf: url, encoding: .utf8) else { continue }
            let unknown = Self.sluiceNames(in: text).subtracting(known)
            #expect(unknown.isEmpty, "\(url.lastPathComponent) names \(unknown.sorted()), which sluice does not read")
        }
    }

    @Test("definitions.json is what `sluice topology export` prints, and rabbitmq.conf is key = value")
    func rabbitmqFiles() async throws {
        let file = Self.deploy.appendingPathComponent("rabbitmq/definitions.json")
        let committed = try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? NSDictionary
        let (status, output) = try await SluiceBinary.run(["topology", "export", "--queue", "default", "--coordinator"])
        #expect(status == 0)
        let generated = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? NSDictionary
        #expect(committed != nil && committed == generated,
                "regenerate it: sluice topology export --queue default --coordinator > deploy/rabbitmq/definitions.json")
        let queues = (generated?["queues"] as? [[String: Any]])?.compactMap { $0["name"] as? String } ?? []
        #expect(queues.contains("sluice.q.default") && queues.contains("sluice.dead.default") && queues.contains("sluice.coordinator"))
        #expect(!queues.contains("sluice.q.default~high"), "levels only when asked for")
        let (levelsStatus, levelsOutput) = try await SluiceBinary.run(["topology", "export", "--queue", "reports", "--priorities"])
        #expect(levelsStatus == 0)
        let levels = try JSONSerialization.jsonObject(with: Data(levelsOutput.utf8)) as? NSDictionary
        let levelQueues = (levels?["queues"] as? [[String: Any]])?.compactMap { $0["name"] as? String } ?? []
        #expect(Set(levelQueues.filter { $0.hasPrefix("sluice.q.") || $0.hasPrefix("sluice.dead.") })
                == ["sluice.q.reports~high", "sluice.q.reports", "sluice.q.reports~low", "sluice.dead.reports"])
        let levelKeys = (levels?["bindings"] as? [[String: Any]])?.filter { ($0["source"] as? String) == "sluice.tasks" }
            .compactMap { $0["routing_key"] as? String } ?? []
        #expect(Set(levelKeys) == ["reports~high", "reports", "reports~low"])

        let conf = try String(contentsOf: Self.deploy.appendingPathComponent("rabbitmq/rabbitmq.conf"), encoding: .utf8)
        var keys: [String: String] = [:]
        for line in conf.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let parts = trimmed.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            #expect(parts.count == 2 && !parts[0].isEmpty && !parts[1].isEmpty, "not key = value: \(trimmed)")
            if parts.count == 2 { #expect(keys.updateValue(parts[1], forKey: parts[0]) == nil, "\(parts[0]) set twice") }
        }
        #expect(keys["listeners.tcp.default"] == "5672")
        #expect(keys["management.tcp.port"] == "15672")
    }
}

@Suite("docs/")
struct DocsTests {
    @Test("docs/cli.md is the CLI's current --help (regenerate: sluice cli-reference > docs/cli.md)")
    func cliReference() async throws {
        let committed = try String(contentsOf: DeployFilesTests.root.appendingPathComponent("docs/cli.md"), encoding: .utf8)
        let (status, generated) = try await SluiceBinary.run(["cli-reference"])
        #expect(status == 0)
        #expect(committed == generated, "docs/cli.md is out of date: run `sluice cli-reference > docs/cli.md`")
        for command in ["sluice worker", "sluice queues", "sluice workers", "sluice top", "sluice dev", "sluice topology export"] {
            #expect(committed.contains("\n## \(command)\n"), "\(command) is documented")
        }
    }
}
