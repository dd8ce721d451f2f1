import ArgumentParser
import Foundation
import SluiceCore

/// The key that signs and checks step outcomes: `--event-key-file`'s
/// contents (surrounding whitespace dropped), else `SLUICE_EVENT_KEY`, else
/// none (outcomes unsigned and unchecked).
func eventSigner(keyFile: String?) throws -> EventSigner? {
    var key: String?
    if let keyFile {
        guard let data = FileManager.default.contents(atPath: keyFile), let text = String(data: data, encoding: .utf8) else {
            throw CLIError("cannot read --event-key-file \(keyFile)")
        }
        key = text.trimmingCharacters(in: .whitespacesAndNewlines)
    } else {
        key = ProcessInfo.processInfo.environment["SLUICE_EVENT_KEY"]
    }
    guard let key, !key.isEmpty else { return nil }
    do {
        return try EventSigner(key: Array(key.utf8))
    } catch let error as SluiceError {
        throw CLIError("the event key: \(error.message)")
    }
}

/// An error printed as-is, exit status 1.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Reads JSON arguments from a literal, `@file`, or `-` (standard input);
/// `option` names the option in the error.
func readArguments(_ spec: String, option: String = "--args") throws -> [UInt8] {
    let bytes: [UInt8]
    if spec == "-" {
        bytes = Array(FileHandle.standardInput.readDataToEndOfFile())
    } else if spec.hasPrefix("@") {
        let path = String(spec.dropFirst())
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
        bytes = Array(data)
    } else {
        bytes = Array(spec.utf8)
    }
    guard (try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])) != nil else {
        throw ValidationError("\(option) is not valid JSON")
    }
    return bytes
}

func printJSON(_ object: Any) {
    if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted]) {
        print(String(decoding: data, as: UTF8.self))
    }
}

func standardError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Flushes `print` output now (a pipe buffers it otherwise).
func flushStandardOutput() {
    fflush(nil)
}
