import Foundation
@testable import SluiceCore
import Testing

@Suite struct UUIDTextTests {
    @Test("a time-ordered id is a version-7 UUID whose first 48 bits are the milliseconds given")
    func layout() throws {
        let id = UUIDText.timeOrdered(milliseconds: 1_796_000_000_500)
        let uuid = try #require(UUID(uuidString: id))
        #expect(uuid.uuidString.lowercased() == id)
        let bytes = withUnsafeBytes(of: uuid.uuid) { Array($0) }
        let milliseconds = bytes[0..<6].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        #expect(milliseconds == 1_796_000_000_500)
        #expect(bytes[6] >> 4 == 7, "version 7")
        #expect(bytes[8] >> 6 == 0b10, "RFC 9562 variant")
    }

    @Test("ids of later milliseconds sort after earlier ones; ids of one millisecond differ and share its prefix")
    func order() {
        let start: Int64 = 1_796_000_000_000
        let ids = (0..<1000).map { UUIDText.timeOrdered(milliseconds: start + $0) }
        #expect(zip(ids, ids.dropFirst()).allSatisfy { $0.prefix(13) < $1.prefix(13) }, "each millisecond's prefix above the one before")
        let same = (0..<1000).map { _ in UUIDText.timeOrdered(milliseconds: start) }
        #expect(Set(same).count == same.count)
        #expect(Set(same.map { $0.prefix(13) }).count == 1)
    }

    @Test("a random id is a version-4 UUID with the variant bits set")
    func random() throws {
        for _ in 0..<100 {
            let id = UUIDText.random()
            let uuid = try #require(UUID(uuidString: id))
            #expect(uuid.uuidString.lowercased() == id)
            let bytes = withUnsafeBytes(of: uuid.uuid) { Array($0) }
            #expect(bytes[6] >> 4 == 4)
            #expect(bytes[8] >> 6 == 0b10)
        }
    }
}
