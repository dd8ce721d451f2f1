import ArgumentParser
import Foundation
import SluiceCore
import SluiceWorkerProcess

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
