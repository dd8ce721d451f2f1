#if canImport(Glibc)
import Glibc
#endif

/// This process's environment, read with libc (Foundation's `ProcessInfo`
/// is not linked into a worker).
public enum Environment {
    /// The value of `name`, if set.
    public static func value(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// Every variable, as a dictionary (for a child's environment).
    public static func all() -> [String: String] {
        var result: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            entry += 1
        }
        return result
    }
}
