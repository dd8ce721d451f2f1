#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Our end of a pipe to or from a child: a descriptor this object owns and
/// closes (at the latest when it goes away). Plain read(2) and write(2), so
/// that code starting processes needs nothing of Foundation. One thread
/// reads or writes it at a time, and closes it only when that is done: a
/// `close()` racing a `read` could let the read reach a descriptor number
/// the system has given out again.
public final class PipeEnd: Sendable {
    private let descriptor: Atomic<Int32>

    init(_ fd: Int32) { descriptor = Atomic(fd) }
    deinit { close() }

    /// The descriptor, or -1 once closed.
    public var fileDescriptor: Int32 { descriptor.load(ordering: .acquiring) }

    /// One read(2) into `buffer` (its whole length), as soon as any bytes
    /// are there: how many it read, 0 at the end of the stream. A reader
    /// that loops passes the same buffer each time.
    public func read(into buffer: inout [UInt8]) throws(ChildProcess.SpawnError) -> Int {
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fileDescriptor, $0.baseAddress, $0.count) }
            if n >= 0 { return n }
            if errno != EINTR { throw ChildProcess.SpawnError(operation: "read", errno: errno) }
        }
    }

    /// Everything up to the end of the stream.
    public func readToEnd() throws(ChildProcess.SpawnError) -> [UInt8] {
        var all: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = try read(into: &buffer)
            if n == 0 { return all }
            all += buffer[0..<n]
        }
    }

    /// Writes all of `bytes` (EPIPE if the reader is gone: ignore SIGPIPE first).
    public func write(_ bytes: [UInt8]) throws(ChildProcess.SpawnError) {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fileDescriptor, $0.baseAddress! + written, $0.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ChildProcess.SpawnError(operation: "write", errno: errno)
            }
            written += n
        }
    }

    /// Closes the descriptor (once; later calls do nothing).
    public func close() {
        let fd = descriptor.exchange(-1, ordering: .acquiringAndReleasing)
        if fd >= 0 { _ = Glibc.close(fd) }
    }
}

/// A detached POSIX thread for blocking work (Foundation's `Thread` would
/// pull all of Foundation into a worker binary).
public enum DetachedThread {
    private final class Body: Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    /// Runs `body` on a new thread with a small stack; throws when the
    /// system has no thread to give (EAGAIN: a limit reached).
    public static func start(stackSize: Int = 256 << 10, _ body: @escaping @Sendable () -> Void) throws(ChildProcess.SpawnError) {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, stackSize)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(&thread, &attributes, { context in
            Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        guard status == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            throw ChildProcess.SpawnError(operation: "pthread_create", errno: status)
        }
    }
}
