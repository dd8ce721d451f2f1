#if canImport(Glibc)
import Glibc
#endif
public import SluiceCore

/// The key that signs and checks step outcomes: `--event-key-file`'s
/// contents (surrounding whitespace dropped), else `SLUICE_EVENT_KEY`, else
/// none (outcomes unsigned and unchecked).
public func eventSigner(keyFile: String?) throws -> EventSigner? {
    var key: String?
    if let keyFile {
        guard let bytes = readSmallFile(keyFile, limit: 1 << 20), let text = String(validating: bytes, as: UTF8.self) else {
            throw CLIError("cannot read --event-key-file \(keyFile)")
        }
        // Without the whitespace and line ends around it (a file's last newline above all).
        key = text.trimmedOfWhitespace
    } else {
        key = Environment.value("SLUICE_EVENT_KEY")
    }
    guard let key, !key.isEmpty else { return nil }
    do {
        return try EventSigner(key: Array(key.utf8))
    } catch let error as SluiceError {
        throw CLIError("the event key: \(error.message)")
    }
}

/// A file's bytes, if it can be read and holds at most `limit` of them.
func readSmallFile(_ path: String, limit: Int) -> [UInt8]? {
    guard let file = fopen(path, "rb") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16 << 10)
    while true {
        let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
        if n > 0 { bytes += chunk[0..<n] }
        if bytes.count > limit { return nil }
        if n < chunk.count { return ferror(file) == 0 ? bytes : nil }
    }
}
