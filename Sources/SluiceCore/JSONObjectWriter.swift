/// Writes one flat JSON object, keys in the order given, into an array
/// allocated once at the size the caller measured (``bytes(capacity:_:)``).
/// Events are written for every outcome somebody listens to: appending to a
/// growing array byte by byte, or a String per number, was most of their cost.
struct JSONObjectWriter {
    /// Room for one field besides its string value, if any: a key of at most
    /// 24 bytes, its quotes, colon and comma, and a number (an Int64 takes at
    /// most 20 characters, a Double's shortest form at most 24).
    static let bytesPerField = 56

    private let buffer: UnsafeMutableBufferPointer<UInt8>
    private var count = 0

    private init(buffer: UnsafeMutableBufferPointer<UInt8>) {
        self.buffer = buffer
    }

    /// The object `write` writes, in at most `capacity` bytes: `bytesPerField`
    /// for each field plus ``JSONText/literalCount(_:)`` of each string value,
    /// plus 2 for the braces. Running out of room is a bug of the caller's
    /// measure: it stops the process rather than write past the array.
    static func bytes(capacity: Int, _ write: (inout JSONObjectWriter) -> Void) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: capacity) { buffer, initialized in
            var writer = JSONObjectWriter(buffer: buffer)
            writer.put(UInt8(ascii: "{"))
            write(&writer)
            writer.put(UInt8(ascii: "}"))
            initialized = writer.count
        }
    }

    mutating func field(_ k: StaticString, _ value: String) {
        key(k)
        room(JSONText.literalCount(value))
        count += JSONText.writeString(value, to: buffer.baseAddress! + count)
    }

    mutating func field(_ k: StaticString, _ value: Int64) {
        key(k)
        if value < 0 { put(UInt8(ascii: "-")) }
        writeDigits(value.magnitude)
    }

    mutating func field(_ k: StaticString, _ value: Bool) {
        key(k)
        append(value ? "true" : "false")
    }

    mutating func field(_ k: StaticString, _ value: Double) {
        key(k)
        if writeThousandths(value) { return }
        // The shortest text that reads back as the same Double (a small string: no allocation).
        var text = value.isFinite ? value.description : "0"
        text.withUTF8 { copy($0) }
    }

    /// Writes a value that is a whole number of thousandths below 10^12 (a
    /// worker's durations, carried to the microsecond) as digits, the text
    /// `description` gives: the double nearest that decimal is the value
    /// itself, and the fraction's digits are its shortest form below 10^12.
    /// Formatting a Double the general way costs ten times as much.
    private mutating func writeThousandths(_ value: Double) -> Bool {
        let scaled = (value.magnitude * 1000).rounded()
        guard scaled < 1e15, scaled / 1000 == value.magnitude else { return false }
        let thousandths = Int64(scaled)
        if value.sign == .minus { put(UInt8(ascii: "-")) }
        writeDigits(thousandths / 1000)
        put(UInt8(ascii: "."))
        // Three places, trailing zeros dropped (one digit at least: `1.0`).
        var fraction = thousandths % 1000, places = 3
        while places > 1 && fraction % 10 == 0 { fraction /= 10; places -= 1 }
        writeDigits(fraction, places: places)
        return true
    }

    /// The decimal digits of `value`, at least `places` of them (leading
    /// zeros), written from the last back: no String per number.
    private mutating func writeDigits<T: BinaryInteger>(_ value: T, places: Int = 1) {
        var magnitude = value
        var digits = 1
        var rest = magnitude / 10
        while rest > 0 { digits += 1; rest /= 10 }
        digits = max(digits, places)
        room(digits)
        var at = count + digits
        count = at
        repeat {
            at -= 1
            buffer[at] = UInt8(ascii: "0") + UInt8(magnitude % 10)
            magnitude /= 10
        } while at > count - digits
    }

    /// Keys are literals, plain ASCII: copied without an escape scan.
    private mutating func key(_ k: StaticString) {
        room(k.utf8CodeUnitCount + 4)
        if count > 1 { put(UInt8(ascii: ",")) }
        put(UInt8(ascii: "\""))
        append(k)
        put(UInt8(ascii: "\""))
        put(UInt8(ascii: ":"))
    }

    private mutating func append(_ literal: StaticString) {
        literal.withUTF8Buffer { copy($0) }
    }

    private mutating func copy(_ utf8: UnsafeBufferPointer<UInt8>) {
        room(utf8.count)
        if let base = utf8.baseAddress { (buffer.baseAddress! + count).update(from: base, count: utf8.count) }
        count += utf8.count
    }

    private mutating func put(_ byte: UInt8) {
        room(1)
        buffer[count] = byte
        count += 1
    }

    private func room(_ bytes: Int) {
        precondition(count + bytes <= buffer.count, "JSONObjectWriter: the measured capacity is too small")
    }
}
