#if canImport(Glibc)
public import Glibc
#endif
import Synchronization

/// A child process started with `posix_spawn`, for code that starts
/// processes often (a worker's `--exec` runs one per task).
///
/// Foundation's `Process.run()` on Linux (Swift 6.3.1) can crash with
/// SIGSEGV: it copies whole 256-byte `d_name` fields while listing
/// /proc/self/fd and reads past the end of a mapped page now and then
/// (swift-corelibs-foundation pull request 5472). A worker running a
/// process per task met it under load. This type never lists /proc.
///
/// The child gets default signal handlers and an empty signal mask (a
/// worker ignores SIGPIPE; its scripts must not), and no descriptor of ours
/// beyond its standard streams.
public final class ChildProcess: Sendable {
    /// How a child ended.
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        public var description: String {
            switch self {
            case .exited(let status): "exited with status \(status)"
            case .signaled(let signal): "killed by signal \(signal)"
            }
        }
    }

    /// Where one of the child's standard streams goes.
    public enum Stream: Sendable {
        /// The same as ours.
        case inherit
        /// /dev/null.
        case null
        /// A new pipe; our end is in ``ChildProcess/standardInput`` (or output, error).
        case pipe
        /// A descriptor of ours (not closed by the spawn).
        case descriptor(Int32)
    }

    /// A spawn that failed: `posix_spawn` or a pipe returned `errno`.
    public struct SpawnError: Error, CustomStringConvertible {
        public var operation: String
        public var errno: Int32
        public var description: String { "\(operation): \(String(cString: strerror(errno)))" }
    }

    public let pid: pid_t
    /// Our ends of piped streams: write to the child's input, read its output and errors.
    public let standardInput: PipeEnd?
    public let standardOutput: PipeEnd?
    public let standardError: PipeEnd?
    private let inOwnGroup: Bool
    private let state = Mutex<(termination: Termination?, waiters: [CheckedContinuation<Termination, Never>])>((nil, []))

    /// Starts `executable` (a path, not searched in PATH) with `arguments`
    /// (argv[1...]) and exactly `environment`. With `processGroup`, the
    /// child leads a process group of its own and ``signal(_:)`` reaches
    /// its descendants too.
    public init(executable: String, arguments: [String], environment: [String: String],
                standardInput stdin: Stream = .null, standardOutput stdout: Stream = .inherit, standardError stderr: Stream = .inherit,
                processGroup: Bool = false) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        // Each pipe as (our end, the child's end); the child's ends are closed here after the spawn.
        var ours: [Int32?] = [nil, nil, nil]
        var theirs: [Int32] = []
        defer { for fd in theirs { close(fd) } }
        do {
            for (target, stream) in [(Int32(0), stdin), (1, stdout), (2, stderr)] {
                switch stream {
                case .inherit:
                    break
                case .null:
                    posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
                case .descriptor(let fd):
                    posix_spawn_file_actions_adddup2(&actions, fd, target)
                case .pipe:
                    var fds: [Int32] = [-1, -1]
                    if let pipe2 = Self.pipe2 {
                        guard pipe2(&fds, O_CLOEXEC) == 0 else { throw SpawnError(operation: "pipe2", errno: errno) }
                    } else {
                        // A spawn elsewhere that catches these two before fcntl
                        // closes them itself, with closefrom (glibc has both or neither).
                        guard pipe(&fds) == 0 else { throw SpawnError(operation: "pipe", errno: errno) }
                        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
                    }
                    let (child, parent) = target == 0 ? (fds[0], fds[1]) : (fds[1], fds[0])
                    theirs.append(child)
                    ours[Int(target)] = parent
                    // dup2 onto 0-2 clears close-on-exec for the child's copy.
                    posix_spawn_file_actions_adddup2(&actions, child, target)
                }
            }
        } catch {
            for case let fd? in ours { close(fd) }
            throw error
        }
        if let closeFrom = Self.closeFrom { _ = closeFrom(&actions, 3) }

        var flags = Int32(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)
        var everySignal = sigset_t()
        sigfillset(&everySignal)
        sigdelset(&everySignal, SIGKILL)
        sigdelset(&everySignal, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &everySignal)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        if processGroup {
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv + envp { free(p) } }
        var child: pid_t = 0
        let result = posix_spawn(&child, executable, &actions, &attributes, argv, envp)
        guard result == 0 else {
            for case let fd? in ours { close(fd) }
            throw SpawnError(operation: "posix_spawn \(executable)", errno: result)
        }
        pid = child
        inOwnGroup = processGroup
        standardInput = ours[0].map(PipeEnd.init)
        standardOutput = ours[1].map(PipeEnd.init)
        standardError = ours[2].map(PipeEnd.init)
        do {
            try DetachedThread.start(stackSize: 64 << 10) { [self] in reap() }
        } catch {
            // No thread to wait for it: stop it rather than leave it unwatched.
            _ = kill(processGroup ? -child : child, SIGKILL)
            var status: Int32 = 0
            while waitpid(child, &status, 0) == -1 && errno == EINTR {}
            throw error
        }
    }

    /// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34 and later),
    /// looked up at run time because Swift's Glibc module does not declare it.
    private static let closeFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    /// `pipe2`, looked up at run time as ``closeFrom`` is: atomic close-on-exec.
    private static let pipe2: (@convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "pipe2") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32).self)
    }()

    /// Waits for the child on a thread of its own, and reaps it under the
    /// lock, so that ``signal(_:)`` never reaches a reused pid.
    private func reap() {
        var info = siginfo_t()
        // Waits without reaping: the pid stays ours until the lock below.
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
        let waiters = state.withLock { s -> [CheckedContinuation<Termination, Never>] in
            var status: Int32 = 0
            var reaped: pid_t
            repeat { reaped = waitpid(pid, &status, 0) } while reaped == -1 && errno == EINTR
            if reaped == pid {
                let signal = status & 0x7f
                s.termination = signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal)
            } else {
                // Reaped by someone else (SIGCHLD ignored, a waitpid(-1)
                // elsewhere): what waitid saw, never a made-up success.
                let code = info.si_code, value = info._sifields._sigchld.si_status
                s.termination = code == Int32(CLD_EXITED) ? .exited(value) : .signaled(code == 0 ? SIGKILL : value)
            }
            defer { s.waiters = [] }
            return s.waiters
        }
        let termination = state.withLock { $0.termination! }
        for waiter in waiters { waiter.resume(returning: termination) }
    }

    /// Whether the child has not ended yet.
    public var isRunning: Bool { state.withLock { $0.termination == nil } }

    /// How it ended, once it has.
    public var termination: Termination? { state.withLock { $0.termination } }

    /// Waits until the child ends.
    public func wait() async -> Termination {
        await withCheckedContinuation { continuation in
            let ended = state.withLock { s -> Termination? in
                if let t = s.termination { return t }
                s.waiters.append(continuation)
                return nil
            }
            if let ended { continuation.resume(returning: ended) }
        }
    }

    /// Sends `signal` to the child (and its group, if it leads one), unless it has ended.
    public func signal(_ signal: Int32) {
        state.withLock { s in
            guard s.termination == nil else { return }
            _ = kill(inOwnGroup ? -pid : pid, signal)
        }
    }
}
