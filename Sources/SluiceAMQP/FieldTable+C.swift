import CRabbitMQ
import SluiceWire

private func kind(_ k: amqp_field_value_kind_t) -> UInt8 { UInt8(truncatingIfNeeded: k.rawValue) }

extension FieldTable {
    /// Copies a rabbitmq-c table into Swift values.
    init(_ table: amqp_table_t) {
        self.init()
        guard table.num_entries > 0, let entries = table.entries else { return }
        for i in 0..<Int(table.num_entries) {
            let entry = entries[i]
            self[entry.key.string] = FieldValue(entry.value)
        }
    }

    /// Builds the rabbitmq-c form of this table in `arena`.
    func cTable(in arena: CArena) -> amqp_table_t {
        guard !entries.isEmpty else { return amqp_table_t(num_entries: 0, entries: nil) }
        let out = arena.allocate(amqp_table_entry_t.self, count: entries.count)
        for (i, entry) in entries.enumerated() {
            out.advanced(by: i).initialize(to: amqp_table_entry_t(key: arena.bytes(entry.key), value: entry.value.cValue(in: arena)))
        }
        return amqp_table_t(num_entries: Int32(entries.count), entries: out)
    }
}

extension FieldValue {
    /// Copies a rabbitmq-c field value into a Swift value.
    init(_ v: amqp_field_value_t) {
        switch v.kind {
        case kind(AMQP_FIELD_KIND_BOOLEAN): self = .bool(v.value.boolean != 0)
        case kind(AMQP_FIELD_KIND_I8): self = .int8(v.value.i8)
        case kind(AMQP_FIELD_KIND_U8): self = .uint8(v.value.u8)
        case kind(AMQP_FIELD_KIND_I16): self = .int16(v.value.i16)
        case kind(AMQP_FIELD_KIND_U16): self = .uint16(v.value.u16)
        case kind(AMQP_FIELD_KIND_I32): self = .int32(v.value.i32)
        case kind(AMQP_FIELD_KIND_U32): self = .uint32(v.value.u32)
        case kind(AMQP_FIELD_KIND_I64): self = .int64(v.value.i64)
        case kind(AMQP_FIELD_KIND_U64): self = .int64(Int64(truncatingIfNeeded: v.value.u64))
        case kind(AMQP_FIELD_KIND_F32): self = .float(v.value.f32)
        case kind(AMQP_FIELD_KIND_F64): self = .double(v.value.f64)
        case kind(AMQP_FIELD_KIND_DECIMAL): self = .decimal(scale: v.value.decimal.decimals, value: v.value.decimal.value)
        case kind(AMQP_FIELD_KIND_UTF8): self = .string(v.value.bytes.string)
        case kind(AMQP_FIELD_KIND_BYTES): self = .bytes(v.value.bytes.array)
        case kind(AMQP_FIELD_KIND_ARRAY):
            var items: [FieldValue] = []
            let array = v.value.array
            if array.num_entries > 0, let entries = array.entries {
                items.reserveCapacity(Int(array.num_entries))
                for i in 0..<Int(array.num_entries) { items.append(FieldValue(entries[i])) }
            }
            self = .array(items)
        case kind(AMQP_FIELD_KIND_TABLE): self = .table(FieldTable(v.value.table))
        case kind(AMQP_FIELD_KIND_TIMESTAMP): self = .timestamp(v.value.u64)
        default: self = .void
        }
    }

    /// Builds the rabbitmq-c form of this value in `arena`.
    func cValue(in arena: CArena) -> amqp_field_value_t {
        var v = amqp_field_value_t()
        switch self {
        case .bool(let b): v.kind = kind(AMQP_FIELD_KIND_BOOLEAN); v.value.boolean = b ? 1 : 0
        case .int8(let x): v.kind = kind(AMQP_FIELD_KIND_I8); v.value.i8 = x
        case .uint8(let x): v.kind = kind(AMQP_FIELD_KIND_U8); v.value.u8 = x
        case .int16(let x): v.kind = kind(AMQP_FIELD_KIND_I16); v.value.i16 = x
        case .uint16(let x): v.kind = kind(AMQP_FIELD_KIND_U16); v.value.u16 = x
        case .int32(let x): v.kind = kind(AMQP_FIELD_KIND_I32); v.value.i32 = x
        case .uint32(let x): v.kind = kind(AMQP_FIELD_KIND_U32); v.value.u32 = x
        case .int64(let x): v.kind = kind(AMQP_FIELD_KIND_I64); v.value.i64 = x
        case .float(let x): v.kind = kind(AMQP_FIELD_KIND_F32); v.value.f32 = x
        case .double(let x): v.kind = kind(AMQP_FIELD_KIND_F64); v.value.f64 = x
        case .decimal(let scale, let value):
            v.kind = kind(AMQP_FIELD_KIND_DECIMAL); v.value.decimal = amqp_decimal_t(decimals: scale, value: value)
        case .string(let s): v.kind = kind(AMQP_FIELD_KIND_UTF8); v.value.bytes = arena.bytes(s)
        case .bytes(let b): v.kind = kind(AMQP_FIELD_KIND_BYTES); v.value.bytes = arena.bytes(b)
        case .array(let items):
            v.kind = kind(AMQP_FIELD_KIND_ARRAY)
            if items.isEmpty {
                v.value.array = amqp_array_t(num_entries: 0, entries: nil)
            } else {
                let out = arena.allocate(amqp_field_value_t.self, count: items.count)
                for (i, item) in items.enumerated() { out.advanced(by: i).initialize(to: item.cValue(in: arena)) }
                v.value.array = amqp_array_t(num_entries: Int32(items.count), entries: out)
            }
        case .table(let t): v.kind = kind(AMQP_FIELD_KIND_TABLE); v.value.table = t.cTable(in: arena)
        case .timestamp(let t): v.kind = kind(AMQP_FIELD_KIND_TIMESTAMP); v.value.u64 = t
        case .void: v.kind = kind(AMQP_FIELD_KIND_VOID)
        }
        return v
    }
}

extension FieldTable {
    /// The table in AMQP wire encoding, produced by rabbitmq-c's own encoder
    /// (so tests can check our C conversion against the protocol bytes).
    func wireEncoded() throws -> [UInt8] {
        let arena = CArena()
        // Alive until the C call has read what it points to (Swift may end a
        // lifetime at the last Swift use).
        defer { withExtendedLifetime(arena) {} }
        var table = cTable(in: arena)
        var capacity = 4096
        while true {
            let buffer = arena.allocate(bytes: capacity)
            var offset = 0
            let status = amqp_encode_table(amqp_bytes_t(len: capacity, bytes: buffer), &table, &offset)
            if status == AMQP_STATUS_OK.rawValue {
                return Array(UnsafeRawBufferPointer(start: buffer, count: offset))
            }
            guard status == AMQP_STATUS_TABLE_TOO_BIG.rawValue, capacity < 1 << 26 else {
                throw AMQPCheck.libraryError(status, operation: "encode field table")
            }
            capacity *= 4
        }
    }

    /// Decodes AMQP wire bytes (a 4-byte length, then entries) with rabbitmq-c's decoder.
    init(wireEncoded bytes: [UInt8]) throws {
        var pool = amqp_pool_t()
        init_amqp_pool(&pool, 4096)
        defer { empty_amqp_pool(&pool) }
        var table = amqp_table_t()
        var offset = 0
        let status = bytes.withUnsafeBytes { raw -> Int32 in
            let encoded = amqp_bytes_t(len: raw.count, bytes: UnsafeMutableRawPointer(mutating: raw.baseAddress))
            return amqp_decode_table(encoded, &pool, &table, &offset)
        }
        guard status == AMQP_STATUS_OK.rawValue else {
            throw AMQPCheck.libraryError(status, operation: "decode field table")
        }
        self.init(table)
    }
}
