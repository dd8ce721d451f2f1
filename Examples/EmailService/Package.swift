// swift-tools-version:6.1
// An example service: a producer that enqueues typed tasks and a worker that
// handles them. Built by CI (scripts/test) against the Sluice in this repository.
import Foundation
import PackageDescription

// A path dependency's identity is its folder's name, which differs between
// checkouts (CI clones into a folder of its own): work it out.
let sluice = URL(fileURLWithPath: Context.packageDirectory)
    .deletingLastPathComponent().deletingLastPathComponent().lastPathComponent.lowercased()

let package = Package(
    name: "EmailService",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../.."),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .target(name: "EmailTasks", dependencies: [.product(name: "SluiceCore", package: sluice)]),
        .executableTarget(name: "email-producer", dependencies: [
            "EmailTasks",
            .product(name: "SluiceClient", package: sluice),
            .product(name: "SluiceRabbitMQ", package: sluice),
        ]),
        .executableTarget(name: "email-worker", dependencies: [
            "EmailTasks",
            .product(name: "SluiceWorker", package: sluice),
            .product(name: "SluiceRabbitMQ", package: sluice),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ]),
    ]
)
