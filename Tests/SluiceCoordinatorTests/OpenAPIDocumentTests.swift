import Foundation
import SluiceCoordinator
import SluiceWorkflow
import Testing
import SluiceAPI

@Suite("The API contract: docs/openapi.json, what the server serves, and its routes")
struct OpenAPIDocumentTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func document() throws -> JSONValue { try JSONValue.parse(Array(OpenAPIDocument.json.utf8)) }

    @Test("the served document is docs/openapi.json (scripts/embed-openapi), OpenAPI 3.1")
    func servedIsDocs() throws {
        let docs = try String(contentsOf: Self.repository.appendingPathComponent("docs/openapi.json"), encoding: .utf8)
        #expect(docs.trimmingCharacters(in: .newlines) == OpenAPIDocument.json.trimmingCharacters(in: .newlines),
                "docs/openapi.json changed: run scripts/embed-openapi")
        #expect(try Self.document()["openapi"] == "3.1.0")
    }

    @Test("every route the server registers is in the document with its method and operation id, and nothing else is")
    func routesMatch() throws {
        let document = try Self.document()
        guard case .object(let paths)? = document["paths"] else { Issue.record("no paths"); return }
        var documented: Set<String> = []
        for (path, item) in paths {
            guard case .object(let operations) = item else { continue }
            for (method, operation) in operations where ["get", "post", "put", "delete", "patch"].contains(method) {
                guard case .string(let id)? = operation["operationId"] else { Issue.record("\(method) \(path) has no operationId"); continue }
                documented.insert("\(method.uppercased()) \(path) \(id)")
            }
        }
        let served = Set(APIRoute.allCases.map { "\($0.method) \($0.path) \($0.operationID)" })
        #expect(served.subtracting(documented).isEmpty, "served but not documented: \(served.subtracting(documented).sorted())")
        #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served).sorted())")
        // Handlers are registered only through APIRoute (`router.on(.route)`), so the list above is what the server serves.
        let source = try String(contentsOf: Self.repository.appendingPathComponent("Sources/SluiceCoordinator/HTTP/CoordinatorAPI.swift"),
                                encoding: .utf8)
        for verb in ["get", "post", "put", "delete", "patch"] {
            #expect(!source.contains("router.\(verb)("), "a route registered around APIRoute: router.\(verb)(")
        }
    }

    @Test("every $ref resolves; every response has a schema or is text; run and step statuses list every case")
    func references() throws {
        let document = try Self.document()
        var refs: [String] = []
        func walk(_ value: JSONValue) {
            switch value {
            case .object(let o):
                if case .string(let ref)? = o["$ref"] { refs.append(ref) }
                for (_, v) in o { walk(v) }
            case .array(let a):
                for v in a { walk(v) }
            default: break
            }
        }
        walk(document)
        #expect(!refs.isEmpty)
        for ref in Set(refs) {
            #expect(ref.hasPrefix("#/"), "\(ref)")
            var node: JSONValue? = document
            for part in ref.dropFirst(2).split(separator: "/") { node = node?[String(part)] }
            #expect(node != nil, "\(ref) does not resolve")
        }
        let runStatus = try #require(document["components"]?["schemas"]?["RunStatus"]?["enum"] ?? document["components"]?["schemas"]?["RunState"]?["properties"]?["status"]?["enum"])
        #expect(Set(runStatus.arrayValue ?? []) == Set(RunState.Status.allCases.map { JSONValue.string($0.rawValue) }), "\(runStatus)")
    }
}

private extension JSONValue {
    var arrayValue: [JSONValue]? { if case .array(let a) = self { a } else { nil } }
}
