@testable import SluiceCoordinator
import Testing

/// Released migrations must never change: databases that ran them would
/// differ from new ones. Their text is pinned by a hash per engine.
@Suite("Store migrations")
struct StoreMigrationTests {
    /// FNV-1a, 64 bits: stable across runs and platforms.
    static func fingerprint(_ statements: [String]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in statements.joined(separator: "\n;\n").utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        return hash
    }

    /// Migration version → fingerprint, SQLite then PostgreSQL. Add a line
    /// for each new migration; never change one.
    static let released: [Int: (sqlite: UInt64, postgres: UInt64)] = [
        1: (0x6d61_0198_9429_37ea, 0x261a_47fc_1134_f657),
        2: (0x7ff9_d2ec_84b7_d8fb, 0x710a_974f_21bf_c28f),
        3: (0x0db8_a8b1_e5f2_db0a, 0x0db8_a8b1_e5f2_db0a),
        4: (0x3b34_9502_cc4c_d1f0, 0x3b34_9502_cc4c_d1f0),
        5: (0x3f19_4811_8e55_4bbe, 0xc064_fe67_9fc3_e3d3),
    ]

    @Test("released migrations render exactly as they were released, for both engines")
    func pinned() {
        let sqlite = StoreMigrations.all(.sqlite)
        let postgres = StoreMigrations.all(.postgres)
        #expect(sqlite.map(\.version) == postgres.map(\.version))
        #expect(sqlite.map(\.version) == sqlite.map(\.version).sorted(), "numbered in order")
        for (version, expected) in Self.released {
            let s = sqlite.first { $0.version == version }?.statements ?? []
            let p = postgres.first { $0.version == version }?.statements ?? []
            #expect(Self.fingerprint(s) == expected.sqlite, "SQLite migration \(version) changed")
            #expect(Self.fingerprint(p) == expected.postgres, "PostgreSQL migration \(version) changed")
        }
    }

    @Test("the engines differ only in the column types the dialect names")
    func dialects() {
        let sqlite = StoreMigrations.all(.sqlite).flatMap(\.statements).joined(separator: "\n")
        let postgres = StoreMigrations.all(.postgres).flatMap(\.statements).joined(separator: "\n")
        #expect(!sqlite.contains("BIGINT") && !sqlite.contains("BIGSERIAL"))
        #expect(postgres.contains("BIGSERIAL PRIMARY KEY") && !postgres.contains("AUTOINCREMENT"))
        #expect(StoreMigrations.schemaTable(.postgres).contains("applied_at BIGINT"))
    }
}

