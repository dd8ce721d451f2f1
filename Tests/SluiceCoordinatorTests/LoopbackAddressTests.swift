@testable import SluiceCoordinator
import Testing

@Suite("Loopback addresses")
struct LoopbackAddressTests {
    @Test("loopback is decided from the resolved address: 127.evil.example is not loopback")
    func loopback() {
        for host in ["127.0.0.1", "127.1.2.3", "::1", "localhost", "::ffff:127.0.0.1"] {
            #expect(LoopbackAddress.isLoopback(host), "\(host)")
        }
        for host in ["127.evil.example", "0.0.0.0", "10.0.0.1", "::", "example.invalid"] {
            #expect(!LoopbackAddress.isLoopback(host), "\(host)")
        }
    }
}
