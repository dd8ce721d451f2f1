import CRabbitMQ
import Glibc

/// Memory for C structures built from Swift values for one rabbitmq-c call.
///
/// rabbitmq-c takes tables and byte strings as raw pointers. Swift strings have
/// no stable address (`amqp_cstring_bytes` on one dangles), so everything is
/// copied into memory owned here and freed when the arena goes away, after the
/// call returned. Used only on a connection's own thread.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit {
        for block in blocks { free(block) }
    }

    func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        let block = malloc(max(bytes, 1))!
        blocks.append(block)
        return block
    }

    func allocate<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        allocate(bytes: MemoryLayout<T>.stride * count).bindMemory(to: T.self, capacity: count)
    }

    /// A copy of the string's UTF-8 bytes (no terminator) as `amqp_bytes_t`.
    func bytes(_ string: String) -> amqp_bytes_t {
        var string = string
        return string.withUTF8 { bytes(UnsafeRawBufferPointer($0)) }
    }

    /// A copy of the bytes as `amqp_bytes_t`.
    func bytes(_ buffer: UnsafeRawBufferPointer) -> amqp_bytes_t {
        guard buffer.count > 0, let base = buffer.baseAddress else { return amqp_bytes_t(len: 0, bytes: nil) }
        let block = allocate(bytes: buffer.count)
        block.copyMemory(from: base, byteCount: buffer.count)
        return amqp_bytes_t(len: buffer.count, bytes: block)
    }

    func bytes(_ array: [UInt8]) -> amqp_bytes_t {
        array.withUnsafeBytes { bytes($0) }
    }

    /// A NUL-terminated copy, for the few calls that take C strings.
    func cString(_ string: String) -> UnsafePointer<CChar> {
        let utf8 = Array(string.utf8)
        let block = allocate(CChar.self, count: utf8.count + 1)
        for (i, byte) in utf8.enumerated() { block[i] = CChar(bitPattern: byte) }
        block[utf8.count] = 0
        return UnsafePointer(block)
    }
}

extension amqp_bytes_t {
    /// The bytes as a Swift array (a copy).
    var array: [UInt8] {
        guard len > 0, let bytes else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes, count: len))
    }

    /// The bytes decoded as UTF-8, invalid sequences repaired.
    var string: String {
        guard len > 0, let bytes else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: bytes, count: len), as: UTF8.self)
    }

    static var empty: amqp_bytes_t { amqp_bytes_t(len: 0, bytes: nil) }
}
