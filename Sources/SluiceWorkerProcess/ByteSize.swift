public import ArgumentParser
import SluiceCore

/// A size in bytes: a number, or one with a binary suffix (`64KiB`, `1MiB`,
/// `2GiB`; `k`, `m`, `g` mean the same).
public struct ByteSize: ExpressibleByArgument, Sendable, Hashable, CustomStringConvertible {
    public let bytes: Int

    public init(bytes: Int) { self.bytes = bytes }

    public init?(argument: String) {
        let text = argument.trimmedOfSpaces
        let units: [(String, Int)] = [("gib", 1 << 30), ("mib", 1 << 20), ("kib", 1 << 10), ("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)]
        let lower = text.lowercased()
        var multiplier = 1
        var number = Substring(lower)
        if let (suffix, factor) = units.first(where: { lower.hasSuffix($0.0) }) {
            multiplier = factor
            number = number.dropLast(suffix.count)
        }
        guard let value = Int(number), value >= 0 else { return nil }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { return nil }
        bytes = product
    }

    public var description: String {
        for (suffix, factor) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] where bytes >= factor && bytes % factor == 0 {
            return "\(bytes / factor)\(suffix)"
        }
        return "\(bytes)"
    }

    public var defaultValueDescription: String { description }
}
