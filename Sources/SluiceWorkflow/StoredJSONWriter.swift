import Foundation
import SluiceCore

/// Appends JSON text: objects, arrays and the field types of stored state.
struct StoredJSONWriter {
    var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(512) }

    mutating func object(_ body: (inout ObjectWriter) -> Void) {
        var writer = ObjectWriter(out: self)
        bytes = []
        writer.out.bytes.append(UInt8(ascii: "{"))
        body(&writer)
        writer.out.bytes.append(UInt8(ascii: "}"))
        self = writer.out
    }

    mutating func array<T>(_ items: [T], _ write: (inout StoredJSONWriter, T) -> Void) {
        bytes.append(UInt8(ascii: "["))
        for (i, item) in items.enumerated() {
            if i > 0 { bytes.append(UInt8(ascii: ",")) }
            write(&self, item)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    /// The fields of one object, commas between them.
    struct ObjectWriter {
        var out: StoredJSONWriter
        private var first = true

        init(out: StoredJSONWriter) { self.out = out }

        mutating func key(_ k: String) {
            if !first { out.bytes.append(UInt8(ascii: ",")) }
            first = false
            JSONText.appendString(k, to: &out.bytes)
            out.bytes.append(UInt8(ascii: ":"))
        }

        mutating func field(_ k: String, _ value: String) {
            key(k)
            JSONText.appendString(value, to: &out.bytes)
        }

        mutating func field(_ k: String, _ value: Int) {
            key(k)
            out.bytes.append(contentsOf: String(value).utf8)
        }

        mutating func field(_ k: String, _ value: JSONValue) {
            key(k)
            value.write(to: &out.bytes)
        }

        mutating func field(_ k: String, _ values: [String]) {
            key(k)
            out.array(values) { out, value in JSONText.appendString(value, to: &out.bytes) }
        }

        /// As `JSONEncoder` writes a date with `.millisecondsSince1970`: the
        /// same double, so it reads back as the same date.
        mutating func field(_ k: String, _ value: Date) {
            key(k)
            out.bytes.append(contentsOf: JSONValue.format(1000.0 * value.timeIntervalSince1970).utf8)
        }
    }
}
