public import SluiceLocalBroker
import Foundation
import Synchronization

/// Numbers the nodes this process asks for.
private let uniqueNodeCounter = Mutex(0)

extension PrivateBroker {
    /// A node description with a unique name and free-looking ports; nothing starts yet.
    public static func unique(_ purpose: String, tlsDirectory: String? = nil, plugins: String = "none") -> PrivateBroker {
        let n = uniqueNodeCounter.withLock { $0 += 1; return $0 }
        let pid = Int(ProcessInfo.processInfo.processIdentifier)
        // 28000-31990: below Linux's ephemeral range, clear of the dev (27170)
        // and test (27270) nodes; spread by pid so parallel runs differ.
        let slot = (pid % 40) * 10 + n
        let port = 28_000 + (slot % 400) * 10
        return PrivateBroker(name: "t-\(purpose)-\(pid)-\(n)", basePort: port, tlsDirectory: tlsDirectory, plugins: plugins)
    }
}

extension PrivateCluster {
    /// A cluster description with a unique name and ports (40 from the
    /// base, in 24000-26990: clear of single test nodes, the dev and test
    /// nodes and the default cluster); nothing starts yet.
    public static func unique(_ purpose: String, plugins: String = "none") -> PrivateCluster {
        let n = uniqueNodeCounter.withLock { $0 += 1; return $0 }
        let pid = Int(ProcessInfo.processInfo.processIdentifier)
        let slot = (pid % 20) * 4 + n
        return PrivateCluster(name: "t-\(purpose)-\(pid)-\(n)", basePort: 24_000 + (slot % 74) * 40, plugins: plugins)
    }
}
