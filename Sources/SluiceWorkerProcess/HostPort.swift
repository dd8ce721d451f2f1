import ArgumentParser

/// `HOST:PORT` (IPv6 hosts in brackets).
public func parseHostPort(_ text: String) throws -> (String, Int) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
        throw ValidationError("'\(text)' is not HOST:PORT")
    }
    var host = String(text[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard !host.isEmpty else { throw ValidationError("'\(text)' has no host") }
    // A host name or an IP literal: nothing that would make a URL of it ambiguous.
    guard host.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || ".-:_%".unicodeScalars.contains($0)) }) else {
        throw ValidationError("'\(text)': the host must be a name or an IP address")
    }
    return (host, port)
}
