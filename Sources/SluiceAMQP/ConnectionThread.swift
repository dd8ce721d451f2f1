import CRabbitMQ
import SluiceWire
#if canImport(Glibc)
import Glibc
#endif

/// A detached POSIX thread for a connection's loop (Foundation's `Thread`
/// would pull all of Foundation into every worker binary).
enum ConnectionThread {
    private final class Body: Sendable {
        let name: String
        let run: @Sendable () -> Void
        init(_ name: String, _ run: @escaping @Sendable () -> Void) { self.name = name; self.run = run }
    }

    /// Starts `body` on a new thread named `name` (at most 15 bytes shown);
    /// throws when the system has no thread to give (EAGAIN: a limit reached).
    static func start(name: String, stackSize: Int, _ body: @escaping @Sendable () -> Void) throws(AMQPError) {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, stackSize)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let context = Unmanaged.passRetained(Body(name, body)).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(&thread, &attributes, { context in
            let body = Unmanaged<Body>.fromOpaque(context!).takeRetainedValue()
            sluice_name_this_thread(body.name)
            body.run()
            return nil
        }, context)
        guard status == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            throw AMQPError(.connectionFailed, operation: "start the connection thread",
                            message: "pthread_create failed: \(String(cString: strerror(status)))")
        }
    }
}
