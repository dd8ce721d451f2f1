import SluiceWire
import Testing

@Suite("The wire vocabulary, without a broker or C")
struct WireVocabularyTests {
    @Test("setting a key replaces it in place; nil removes it")
    func subscriptSemantics() {
        var table: FieldTable = ["a": 1, "b": 2]
        table["a"] = 3
        table["c"] = 4
        table["b"] = nil
        #expect(table.entries.map(\.key) == ["a", "c"])
        #expect(table["a"] == 3)
        #expect(table["a"]?.intValue == 3)
        #expect(FieldValue.string("x").stringValue == "x")
    }

    @Test("properties are sized as AMQP encodes them")
    func propertiesSize() throws {
        // Flags only.
        #expect(try MessageLimits.propertiesSize(BasicProperties()) == 2)
        // Flags, delivery mode (1), message id as a short string (1 + 3).
        #expect(try MessageLimits.propertiesSize(BasicProperties(deliveryMode: 2, messageId: "abc")) == 2 + 1 + 4)
        // Headers: 4-byte length, key "k" (1 + 1), type and long string "hi" (1 + 4 + 2).
        #expect(try MessageLimits.propertiesSize(BasicProperties(headers: ["k": "hi"])) == 2 + 4 + 2 + 7)
    }

    @Test("a short string over 255 bytes or a body over the maximum fails with unencodable, naming the field")
    func limits() {
        let long = String(repeating: "x", count: 256)
        #expect(throws: AMQPError.self) { try MessageLimits.propertiesSize(BasicProperties(messageId: long)) }
        do {
            try MessageLimits.check(OutboundMessage(routingKey: long, body: []), frameMax: 131_072)
            Issue.record("an over-long routing key passed")
        } catch {
            #expect(error.code == .unencodable)
            #expect(error.message.contains("routing key"))
        }
        do {
            try MessageLimits.check(OutboundMessage(routingKey: "q", body: [1, 2, 3]), frameMax: 131_072, maxMessageBytes: 2)
            Issue.record("an oversized body passed")
        } catch {
            #expect(error.code == .unencodable)
        }
        let headers = FieldTable((0..<200).map { ("key-\($0)", FieldValue.string(String(repeating: "v", count: 100))) })
        #expect(throws: AMQPError.self) {
            try MessageLimits.check(OutboundMessage(routingKey: "q", body: [], properties: BasicProperties(headers: headers)),
                                    frameMax: 4096)
        }
        #expect(throws: Never.self) { try MessageLimits.check(OutboundMessage(routingKey: "q", body: [1]), frameMax: 4096) }
    }
}
