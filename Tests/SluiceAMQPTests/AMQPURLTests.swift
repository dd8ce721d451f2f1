@testable import SluiceAMQP
import SluiceWire
import Testing

@Suite("AMQPURL")
struct AMQPURLTests {
    @Test("defaults follow RabbitMQ's URI spec")
    func defaults() throws {
        let url = try AMQPURL("amqp://localhost")
        #expect(url.user == "guest")
        #expect(url.password == "guest")
        #expect(url.host == "localhost")
        #expect(url.port == 5672)
        #expect(url.vhost == "/")
        #expect(url.tls == nil)
        #expect(url.heartbeatSeconds == 60)
        #expect(try AMQPURL("amqps://h").port == 5671)
        #expect(try AMQPURL("amqps://h").tls?.verifyPeer == true)
        #expect(try AMQPURL("amqp://").host == "localhost")
        #expect(try AMQPURL("amqp://host/").vhost == "")
    }

    @Test("every component, percent-decoded")
    func components() throws {
        let url = try AMQPURL("amqp://us%40er:p%3Ass%2Fw@broker.example:5999/my%2fvhost?heartbeat=10&connection_timeout=2500&channel_max=100&frame_max=8192")
        #expect(url.user == "us@er")
        #expect(url.password == "p:ss/w")
        #expect(url.host == "broker.example")
        #expect(url.port == 5999)
        #expect(url.vhost == "my/vhost")
        #expect(url.heartbeatSeconds == 10)
        #expect(url.connectionTimeoutMilliseconds == 2500)
        #expect(url.channelMax == 100)
        #expect(url.frameMax == 8192)
        #expect(try AMQPURL("amqp://h/%2f").vhost == "/")
        #expect(try AMQPURL("amqp://[::1]:5673/v").host == "::1")
        #expect(try AMQPURL("amqp://[::1]:5673/v").port == 5673)
        #expect(try AMQPURL("amqp://onlyuser@h").user == "onlyuser")
    }

    @Test("TLS options")
    func tlsOptions() throws {
        let url = try AMQPURL("amqps://h?cacertfile=/ca.pem&certfile=/c.pem&keyfile=/k.pem")
        #expect(url.tls == AMQPURL.TLS(caCertificateFile: "/ca.pem", certificateFile: "/c.pem", keyFile: "/k.pem"))
        let none = try AMQPURL("amqps://h?verify=verify_none")
        #expect(none.tls?.verifyPeer == false)
        #expect(none.tls?.verifyHostname == false)
        #expect(try AMQPURL("amqps://h?server_name_indication=disable").tls?.verifyHostname == false)
    }

    @Test("bad URLs give clear errors", arguments: [
        ("http://h", "unsupported scheme"),
        ("localhost:5672", "expected amqp://"),
        ("amqp://h:99999", "port"),
        ("amqp://h:abc", "port"),
        ("amqp://h/a/b", "one path segment"),
        ("amqp://h?heartbeat=-1", "heartbeat"),
        ("amqp://h?hearbeat=5", "unknown option 'hearbeat'"),
        ("amqp://h?cacertfile=/x", "needs an amqps://"),
        ("amqp://h/%zz", "percent-encoding"),
        ("amqps://h?verify=maybe", "verify_peer or verify_none"),
    ])
    func badURLs(input: String, expected: String) {
        let error = #expect(throws: AMQPError.self) { try AMQPURL(input) }
        #expect(error?.code == .invalidURL)
        #expect(error?.message.contains(expected) == true, "\(error?.message ?? "") should mention \(expected)")
    }

    @Test("the password never appears in descriptions or errors")
    func passwordHidden() throws {
        let url = try AMQPURL("amqp://admin:s3cret-pw@h:5672/prod")
        #expect(!url.description.contains("s3cret-pw"))
        #expect(url.description == "amqp://admin:***@h:5672/prod")
        #expect(!"\(url)".contains("s3cret-pw"))
        let error = #expect(throws: AMQPError.self) { try AMQPURL("amqp://admin:s3cret-pw@h:notaport/") }
        #expect(error.map { "\($0)".contains("s3cret-pw") } == false)
        #expect(try AMQPURL("amqp://h/%2f").description.hasSuffix("/%2f"))
    }

    @Test("several nodes of a cluster: comma-separated, each with its port or the scheme's")
    func nodes() throws {
        let url = try AMQPURL("amqp://u:p@n1:5673,n2,[::1]:5674/v?heartbeat=5")
        #expect(url.nodes == [.init(host: "n1", port: 5673), .init(host: "n2", port: 5672), .init(host: "::1", port: 5674)])
        #expect(url.host == "n1" && url.port == 5673)
        #expect(url.user == "u" && url.password == "p" && url.vhost == "v" && url.heartbeatSeconds == 5)
        #expect(url.description == "amqp://u:***@n1:5673,n2:5672,[::1]:5674/v")
        #expect(try AMQPURL("amqps://a,b").nodes.map(\.port) == [5671, 5671])
        #expect(url.only(url.nodes[1]).nodes == [.init(host: "n2", port: 5672)])
        for bad in ["amqp://a,,b", "amqp://a,", "amqp://,a", "amqp://a,b:99999"] {
            #expect(throws: AMQPError.self, "\(bad)") { try AMQPURL(bad) }
        }
    }

    @Test("a repeated --url joins the nodes of URLs that agree on everything else")
    func joining() throws {
        let url = try AMQPURL(joining: ["amqp://u:p@a:1/v", "amqp://u:p@b:2,a:1/v"])
        #expect(url.nodes.map(\.description) == ["a:1", "b:2"])
        #expect(try AMQPURL(joining: ["amqp://h"]) == AMQPURL("amqp://h"))
        for other in ["amqp://u:q@b/v", "amqp://u:p@b/w", "amqps://u:p@b/v", "amqp://u:p@b/v?heartbeat=1"] {
            #expect(throws: AMQPError.self, "\(other)") { try AMQPURL(joining: ["amqp://u:p@a/v", other]) }
        }
        #expect(throws: AMQPError.self) { try AMQPURL(joining: []) }
    }
}
