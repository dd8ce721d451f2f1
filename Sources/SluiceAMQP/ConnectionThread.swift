import CRabbitMQ
import SluiceSpawn
import SluiceWire

/// A connection's loop on a named POSIX thread of its own (SluiceSpawn's
/// `DetachedThread`; Foundation's `Thread` would pull all of Foundation
/// into every worker binary).
enum ConnectionThread {
    /// Starts `body` on a new thread named `name` (at most 15 bytes shown);
    /// throws when the system has no thread to give (EAGAIN: a limit reached).
    static func start(name: String, stackSize: Int, _ body: @escaping @Sendable () -> Void) throws(AMQPError) {
        do {
            try DetachedThread.start(stackSize: stackSize) {
                sluice_name_this_thread(name)
                body()
            }
        } catch {
            throw AMQPError(.connectionFailed, operation: "start the connection thread", message: error.description)
        }
    }
}
