/// An AMQP field table: ordered keys with typed values.
///
/// Used for message headers and for queue, exchange, binding and consumer
/// arguments. Keys keep their insertion order (the wire format is ordered);
/// setting an existing key replaces its value in place.
public struct FieldTable: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    /// The entries, in order.
    public private(set) var entries: [(key: String, value: FieldValue)]

    /// An empty table.
    public init() { entries = [] }

    /// A table with these entries; a later duplicate key replaces an earlier one.
    public init<S: Sequence>(_ pairs: S) where S.Element == (String, FieldValue) {
        entries = []
        for (k, v) in pairs { self[k] = v }
    }

    public init(dictionaryLiteral elements: (String, FieldValue)...) {
        self.init(elements)
    }

    /// The value for a key, or nil; assigning nil removes the key.
    public subscript(key: String) -> FieldValue? {
        get { entries.first(where: { Self.same($0.key, key) })?.value }
        set {
            if let i = entries.firstIndex(where: { Self.same($0.key, key) }) {
                if let newValue { entries[i].value = newValue } else { entries.remove(at: i) }
            } else if let newValue {
                entries.append((key, newValue))
            }
        }
    }

    /// Most keys a lookup passes differ in length: checked first (O(1) for
    /// native strings), it spares String's comparison, which a worker
    /// otherwise ran dozens of times per task over the headers. (Comparing
    /// the bytes with `utf8.elementsEqual` instead measured 4,000
    /// instructions per task more; header keys are ASCII, where both agree.)
    @inline(__always)
    private static func same(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && a == b
    }

    /// Number of entries.
    public var count: Int { entries.count }
    /// Whether the table has no entries.
    public var isEmpty: Bool { entries.isEmpty }

    public func makeIterator() -> IndexingIterator<[(key: String, value: FieldValue)]> {
        entries.makeIterator()
    }

    public static func == (lhs: FieldTable, rhs: FieldTable) -> Bool {
        lhs.entries.count == rhs.entries.count
            && zip(lhs.entries, rhs.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(entries.count)
        for (k, v) in entries {
            hasher.combine(k)
            hasher.combine(v)
        }
    }
}
