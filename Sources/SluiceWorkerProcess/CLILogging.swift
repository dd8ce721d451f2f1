public import Logging
import Synchronization

/// Where the CLI's logs go: standard error, always, so that a command's
/// output on standard output (`--json` above all) holds nothing else. The
/// logging system is set up once per process (swift-log allows no second
/// time); a service command sets its `--log-level` before it does, other
/// commands keep warnings and errors.
public enum CLILogging {
    private static let level = Mutex<Logger.Level>(.warning)

    private static let bootstrapped: Void = {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = CLILogging.level.withLock { $0 }
            return handler
        }
    }()

    /// Sets up logging to standard error (once), at `level` if given for
    /// the loggers made from now on.
    public static func start(level: Logger.Level? = nil) {
        if let level { self.level.withLock { $0 = level } }
        _ = bootstrapped
    }
}
