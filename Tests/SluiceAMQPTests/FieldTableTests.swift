@testable import SluiceAMQP
import SluiceWire
import Testing

@Suite("Field tables through rabbitmq-c's encoder and decoder")
struct FieldTableTests {
    @Test("every value kind survives Swift → C → wire → C → Swift")
    func roundTrip() throws {
        let table: FieldTable = [
            "bool": true, "i8": .int8(-8), "u8": .uint8(200), "i16": .int16(-1600), "u16": .uint16(60000),
            "i32": .int32(-320_000), "u32": .uint32(4_000_000_000), "i64": .int64(-6_400_000_000_000),
            "float": .float(1.5), "double": .double(-2.25), "decimal": .decimal(scale: 3, value: 123_456),
            "string": "Grüße, 世界", "empty": "", "bytes": .bytes([0, 0xFF, 0x10]),
            "array": [1, "two", [3], ["four": 4]], "emptyArray": .array([]),
            "table": ["inner": ["deeper": true]], "emptyTable": .table([:]),
            "timestamp": .timestamp(1_764_000_000), "void": .void,
        ]
        let wire = try table.wireEncoded()
        let decoded = try FieldTable(wireEncoded: wire)
        #expect(decoded == table)
        #expect(decoded.entries.map(\.key) == table.entries.map(\.key), "order is kept")
    }

    @Test("the wire bytes match the AMQP 0-9-1 encoding")
    func knownBytes() throws {
        // 4-byte table size, then: short string key "a", type 't', 1.
        #expect(try (["a": true] as FieldTable).wireEncoded() == [0, 0, 0, 4, 1, 0x61, 0x74, 1])
        // Long string: 'S' + 4-byte length + bytes.
        #expect(try (["k": "hi"] as FieldTable).wireEncoded() == [0, 0, 0, 9, 1, 0x6B, 0x53, 0, 0, 0, 2, 0x68, 0x69])
        // Signed 64-bit 'l', big-endian.
        #expect(try (["n": 258] as FieldTable).wireEncoded() == [0, 0, 0, 11, 1, 0x6E, 0x6C, 0, 0, 0, 0, 0, 0, 1, 2])
        #expect(try FieldTable().wireEncoded() == [0, 0, 0, 0])
    }

    @Test("truncated wire bytes are an error, not a crash")
    func truncated() {
        #expect(throws: AMQPError.self) { try FieldTable(wireEncoded: [0, 0, 0, 9, 1, 0x6B, 0x53, 0, 0]) }
    }
}
