import Foundation
@testable import SluiceCoordinator
import Testing

@Suite struct TimeOrderedUUIDTests {
    @Test("a run id is a version-7 UUID whose first 48 bits are the time in milliseconds")
    func layout() throws {
        let now = Date(timeIntervalSince1970: 1_796_000_000.5)
        let id = TimeOrderedUUID.make(now: now)
        let uuid = try #require(UUID(uuidString: id))
        #expect(id == id.lowercased())
        let bytes = withUnsafeBytes(of: uuid.uuid) { Array($0) }
        let milliseconds = bytes[0..<6].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        #expect(milliseconds == 1_796_000_000_500)
        #expect(bytes[6] >> 4 == 7, "version 7")
        #expect(bytes[8] >> 6 == 0b10, "RFC 9562 variant")
    }

    @Test("ids of later milliseconds sort after earlier ones; ids of one millisecond differ")
    func order() {
        let start = 1_796_000_000_000
        let ids = (0..<1000).map { TimeOrderedUUID.make(now: Date(timeIntervalSince1970: Double(start + $0) / 1000)) }
        #expect(zip(ids, ids.dropFirst()).allSatisfy { $0.prefix(13) < $1.prefix(13) }, "each millisecond's prefix above the one before")
        let same = (0..<1000).map { _ in TimeOrderedUUID.make(now: Date(timeIntervalSince1970: Double(start) / 1000)) }
        #expect(Set(same).count == same.count)
        #expect(Set(same.map { $0.prefix(13) }).count == 1, "one millisecond, one prefix")
    }
}
