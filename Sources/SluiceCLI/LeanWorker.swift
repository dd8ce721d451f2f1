#if canImport(Glibc)
import Glibc
#endif
import SluiceWorkerProcess

/// `sluice worker` in less memory: `sluice-worker`, built beside `sluice`,
/// runs the same worker without the rest of the CLI (the coordinator, the
/// dashboard, NIO, PostgreSQL, OpenTelemetry), and its process holds a
/// fraction of the pages (docs/performance.md, "A worker binary of its own").
enum LeanWorker {
    static let binaryName = "sluice-worker"
    /// Options of `sluice worker` that mean nothing to one process without a
    /// supervisor (`--crash-limit` alone), left out when forwarding, each with
    /// its value.
    static let supervisorOnly = ["--crash-limit"]

    /// Replaces this process (same pid, environment and worker options) with
    /// `sluice-worker` when that binary is next to this one; returns when it
    /// is not, when `SLUICE_WORKER_IN_PROCESS=1`, or when the exec fails: the
    /// worker then runs in this process.
    static func replaceThisProcess() {
        guard Environment.value("SLUICE_WORKER_IN_PROCESS") != "1", let path = siblingPath(),
              access(path, X_OK) == 0 else { return }
        let arguments = CommandLine.arguments
        guard let command = arguments.dropFirst().firstIndex(of: "worker") else { return }
        var forwarded = [path]
        var rest = arguments[(command + 1)...]
        while let argument = rest.first {
            rest = rest.dropFirst()
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            if supervisorOnly.contains(name) {
                if !argument.contains("=") { rest = rest.dropFirst() }
                continue
            }
            forwarded.append(argument)
        }
        fflush(nil)  // every stream: nothing written so far is lost in the exec
        let argv = forwarded.map { strdup($0) } + [nil]
        execv(path, argv)
        // Still here: the exec failed. Run in this process.
        for pointer in argv { free(pointer) }
    }

    /// `sluice-worker` in the folder of this executable.
    private static func siblingPath() -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let me = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = me.lastIndex(of: "/") else { return nil }
        return String(me[...slash]) + binaryName
    }
}
