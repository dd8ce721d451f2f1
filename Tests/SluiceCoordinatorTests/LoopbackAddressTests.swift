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

    @Test("a Host header names loopback only as 127.x.x.x, [::1] or localhost, with or without a port")
    func hostHeader() {
        for authority in ["127.0.0.1:27200", "127.0.0.1", "127.9.8.7:1", "localhost:27200", "LOCALHOST", "[::1]:27200", "[::1]"] {
            #expect(LoopbackGuardMiddleware.isLoopbackAuthority(authority), "\(authority)")
        }
        for authority in ["evil.example:27200", "127.evil.example", "127.0.0.1.evil.example:80", "localhost.evil.example", "[::2]:1", "[::1",
                          "0.0.0.0:27200", "127.0.0:1", "127.0.0.256"] {
            #expect(!LoopbackGuardMiddleware.isLoopbackAuthority(authority), "\(authority)")
        }
        #expect(LoopbackGuardMiddleware.authority(ofOrigin: "http://127.0.0.1:27200") == "127.0.0.1:27200")
        #expect(LoopbackGuardMiddleware.authority(ofOrigin: "null") == nil)
    }
}
