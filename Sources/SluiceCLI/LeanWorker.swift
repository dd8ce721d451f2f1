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

    /// `sluice-worker` in the folder of this executable (of the file a
    /// symbolic link to `sluice` points to), if it is there and
    /// may be run, and `SLUICE_WORKER_IN_PROCESS` is not `1`.
    static func path() -> String? {
        guard Environment.value("SLUICE_WORKER_IN_PROCESS") != "1" else { return nil }
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let me = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = me.lastIndex(of: "/") else { return nil }
        let path = String(me[...slash]) + binaryName
        return access(path, X_OK) == 0 ? path : nil
    }

    /// Replaces this process (same pid, environment and worker options) with
    /// `path` (sluice-worker), given the arguments after `worker`; returns
    /// only when the exec fails: the worker then runs in this process.
    static func replaceThisProcess(with path: String) {
        let arguments = CommandLine.arguments
        guard let command = arguments.dropFirst().firstIndex(of: "worker") else { return }
        let argv = ([path] + arguments[(command + 1)...]).map { strdup($0) } + [nil]
        fflush(nil)  // every stream: nothing written so far is lost in the exec
        // This runs on a thread of the concurrency pool, whose signal mask
        // blocks most signals; the exec keeps the mask, so clear it first.
        var none = sigset_t(), before = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, &before)
        execv(path, argv)
        let failure = errno
        pthread_sigmask(SIG_SETMASK, &before, nil)
        for pointer in argv { free(pointer) }
        let message = "sluice worker: cannot run \(path) (\(String(cString: strerror(failure)))); the worker runs inside sluice\n"
        _ = message.utf8CString.withUnsafeBufferPointer { write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
    }
}
