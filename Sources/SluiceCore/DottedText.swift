/// Words joined by dots (routing keys, derived ids) in one allocation.
/// Interpolation grows its string once per piece, and these are built for
/// every outcome event a worker publishes.
enum DottedText {
    static func join(_ a: String, _ b: String) -> String {
        var a = a, b = b
        return a.withUTF8 { a in b.withUTF8 { b in build(a, b, nil) } }
    }

    static func join(_ a: String, _ b: String, _ c: String) -> String {
        var a = a, b = b, c = c
        return a.withUTF8 { a in b.withUTF8 { b in c.withUTF8 { c in build(a, b, c) } } }
    }

    private static func build(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>,
                              _ c: UnsafeBufferPointer<UInt8>?) -> String {
        let total = a.count + 1 + b.count + (c.map { 1 + $0.count } ?? 0)
        return String(unsafeUninitializedCapacity: total) { out in
            var at = 0
            func put(_ word: UnsafeBufferPointer<UInt8>) {
                if let base = word.baseAddress { (out.baseAddress! + at).update(from: base, count: word.count) }
                at += word.count
            }
            put(a)
            out[at] = UInt8(ascii: "."); at += 1
            put(b)
            if let c {
                out[at] = UInt8(ascii: "."); at += 1
                put(c)
            }
            return at
        }
    }
}
