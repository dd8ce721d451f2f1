// swift-tools-version:6.1
import PackageDescription

let strictSwift: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    // A module's imports are its own: a type from a dependency in a public
    // signature must be imported `public`, and members are visible only from
    // modules a file imports (scripts/check-imports holds the allowed graph).
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "Sluice",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "SluiceWire", targets: ["SluiceWire"]),
        .library(name: "SluiceAMQP", targets: ["SluiceAMQP"]),
        .library(name: "SluiceCore", targets: ["SluiceCore"]),
        .library(name: "SluiceRabbitMQ", targets: ["SluiceRabbitMQ"]),
        .library(name: "SluiceClient", targets: ["SluiceClient"]),
        .library(name: "SluiceWorker", targets: ["SluiceWorker"]),
        .library(name: "SluiceWorkflow", targets: ["SluiceWorkflow"]),
        .library(name: "SluiceAPI", targets: ["SluiceAPI"]),
        .library(name: "SluiceDashboard", targets: ["SluiceDashboard"]),
        .library(name: "SluiceCoordinator", targets: ["SluiceCoordinator"]),
        .library(name: "SluiceMonitor", targets: ["SluiceMonitor"]),
        .library(name: "SluiceLocalBroker", targets: ["SluiceLocalBroker"]),
        .library(name: "SluiceTesting", targets: ["SluiceTesting"]),
        .executable(name: "sluice", targets: ["SluiceCLI"]),
        .executable(name: "sluice-worker", targets: ["SluiceWorkerCommand"]),
        .executable(name: "sluice-library-worker", targets: ["LibraryWorker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/vapor/sqlite-nio", from: "1.13.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.3"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        // OTLP/HTTP export of traces only: its gRPC exporter (a large build) is left out.
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        .systemLibrary(
            name: "CRabbitMQ",
            pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"])]
        ),
        .target(
            name: "SluiceWire",
            swiftSettings: strictSwift
        ),
        .target(
            name: "SluiceAMQP",
            dependencies: [
                "CRabbitMQ", "SluiceWire", "SluiceSpawn",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "SluiceCore",
            dependencies: ["SluiceWire", .product(name: "DequeModule", package: "swift-collections"),
                           .product(name: "Crypto", package: "swift-crypto"),
                           // The API only (no tracer): a traceparent to and from a span's context.
                           .product(name: "Tracing", package: "swift-distributed-tracing")],
            swiftSettings: strictSwift
        ),
        .target(
            name: "SluiceRabbitMQ",
            dependencies: ["SluiceCore", "SluiceWire", "SluiceAMQP"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "SluiceClient",
            dependencies: ["SluiceCore", "SluiceWire", .product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: strictSwift
        ),
        .target(
            name: "SluiceWorker",
            dependencies: [
                "SluiceCore", "SluiceWire",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "SluiceWorkflow",
            dependencies: [
                "SluiceCore",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "SluiceAPI",
            dependencies: ["SluiceCore", "SluiceWorkflow"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "SluiceDashboard",
            dependencies: [
                "SluiceAPI", "SluiceWorkflow", "SluiceCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "SluiceCoordinator",
            dependencies: [
                "SluiceCore", "SluiceWire", "SluiceWorkflow", "SluiceClient", "SluiceAPI", "SluiceDashboard",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "SluiceMonitor",
            dependencies: ["SluiceCore", "SluiceWire", "SluiceAMQP"],
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "SluiceCLI",
            dependencies: [
                "SluiceWire", "SluiceAMQP", "SluiceCore", "SluiceRabbitMQ", "SluiceClient", "SluiceWorker", "SluiceBenchmarks",
                "SluiceWorkflow", "SluiceCoordinator", "SluiceAPI", "SluiceMonitor", "SluiceLocalBroker", "SluiceSpawn",
                "SluiceWorkerProcess",
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "SluiceWorkerProcess",
            dependencies: [
                "SluiceWire", "SluiceAMQP", "SluiceCore", "SluiceRabbitMQ", "SluiceWorker", "SluiceSpawn",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "SluiceWorkerCommand",
            dependencies: [
                "SluiceCore", "SluiceWorkerProcess",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        .target(
            name: "SluiceSpawn",
            swiftSettings: strictSwift
        ),
        .target(
            name: "SluiceLocalBroker",
            dependencies: ["SluiceSpawn"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "SluiceTesting",
            dependencies: ["SluiceLocalBroker", "SluiceSpawn"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "SluiceBenchmarks",
            dependencies: [
                "SluiceWire", "SluiceAMQP", "SluiceCore", "SluiceRabbitMQ", "SluiceClient", "SluiceWorker", "SluiceWorkflow",
                "SluiceCoordinator",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "Benchmarks/SluiceBenchmarks",
            swiftSettings: strictSwift
        ),
        // A worker built from the library alone, for memory measurements
        // (Benchmarks/library-worker-memory.sh).
        .executableTarget(
            name: "LibraryWorker",
            dependencies: [
                "SluiceAMQP", "SluiceCore", "SluiceRabbitMQ", "SluiceWorker",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/LibraryWorker",
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SluiceSpawnTests",
            dependencies: ["SluiceSpawn"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SluiceWireTests",
            dependencies: ["SluiceWire"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SluiceAMQPTests",
            dependencies: ["SluiceAMQP", "SluiceWire"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SluiceDashboardTests",
            dependencies: ["SluiceDashboard", "SluiceAPI", "SluiceWorkflow"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SluiceCoreTests",
            dependencies: ["SluiceCore", "SluiceWire"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SluiceClientTests",
            dependencies: ["SluiceClient", "SluiceCore", "SluiceWire"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SluiceWorkerTests",
            dependencies: ["SluiceWorker", "SluiceClient", "SluiceCore", "SluiceWire", "SluiceTesting",
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "Metrics", package: "swift-metrics"),
                           .product(name: "MetricsTestKit", package: "swift-metrics"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SluiceMonitorTests",
            dependencies: ["SluiceMonitor", "SluiceClient", "SluiceCore", "SluiceWire"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SluiceCLITests",
            dependencies: ["SluiceCLI", "SluiceWorkerProcess", "SluiceTesting", .product(name: "Yams", package: "Yams"),
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SluiceCoordinatorTests",
            dependencies: ["SluiceCoordinator", "SluiceAPI", "SluiceCore", "SluiceWorkflow", "SluiceWorker", "SluiceWire", "SluiceTesting",
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "MetricsTestKit", package: "swift-metrics"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "SluiceWorkflowTests",
            dependencies: ["SluiceWorkflow", "SluiceCore"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["SluiceWire", "SluiceAMQP", "SluiceCore", "SluiceRabbitMQ", "SluiceClient", "SluiceWorker",
                           "SluiceLocalBroker", "SluiceTesting", "SluiceMonitor", "SluiceSpawn",
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           "SluiceWorkflow", "SluiceCoordinator", "SluiceAPI"],
            swiftSettings: strictSwift
        ),
    ]
)
