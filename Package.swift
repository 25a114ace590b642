// swift-tools-version: 6.0
// Switchyard: a distributed Mixture-of-Experts inference runtime.
//
// Targets are tiered (see README "Architecture"); a target imports only lower tiers.
//   tier 4  SwitchyardCLI
//   tier 3  Coordinator · ExpertWorker · Cluster · Server   (never import each other; Server -> Coordinator only,
//           and APIRequests, Server's body parsing without Hummingbird -> Coordinator)
//   tier 2  Models · Wire · Transport
//   tier 1  Kernels · Tokenization
//   tier 0  Tensors · CZeroMQ · CProtobufC · CBLAS · CKernels
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Switchyard",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "switchyard", targets: ["SwitchyardCLI"]),
        // Libraries for the Benchmarks package (Benchmarks/Package.swift depends on this one by path).
        .library(name: "SwitchyardTensors", targets: ["Tensors"]),
        .library(name: "SwitchyardKernels", targets: ["Kernels"]),
        .library(name: "SwitchyardModels", targets: ["Models"]),
        // Libraries for the Fuzz package (Fuzz/Package.swift): the wire decoders, the placement and
        // the HTTP body parsing, fuzzed through the code the processes run.
        .library(name: "SwitchyardWire", targets: ["Wire"]),
        .library(name: "SwitchyardTokenization", targets: ["Tokenization"]),
        .library(name: "SwitchyardCoordinator", targets: ["Coordinator"]),
        .library(name: "SwitchyardAPIRequests", targets: ["APIRequests"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        // HTTP status codes for APIRequests (Hummingbird uses the same types; same URL as it names).
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // SHA-256 of expert tensors (Models); TLS for the HTTP API and its clients (Server). Hummingbird
        // already resolves these; same URLs as it names.
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.30.0"),
    ],
    targets: [
        // tier 0: C libraries, each imported by exactly one Swift target.
        .systemLibrary(name: "CZeroMQ", path: "Sources/CZeroMQ"),
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .target(
            name: "CProtobufC",
            path: "Sources/CProtobufC",
            linkerSettings: [.linkedLibrary("protobuf-c")]
        ),
        .target(name: "Tensors", swiftSettings: strictSettings),
        // SIMD kernels in C (batch-invariant matrix products), chosen at run time by CPU features.
        .target(name: "CKernels", path: "Sources/CKernels"),

        // tier 1
        .target(name: "Kernels", dependencies: ["Tensors", "CBLAS", "CKernels"], swiftSettings: strictSettings),
        .target(name: "Tokenization", swiftSettings: strictSettings),

        // tier 2
        .target(
            name: "Models", dependencies: ["Tensors", "Kernels", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strictSettings),
        .target(name: "Wire", dependencies: ["Tensors", "CProtobufC"], swiftSettings: strictSettings),
        .target(name: "Transport", dependencies: ["CZeroMQ"], swiftSettings: strictSettings),

        // tier 3
        .target(
            name: "Coordinator",
            dependencies: [
                "Tensors", "Kernels", "Models", "Tokenization", "Wire", "Transport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "ExpertWorker",
            dependencies: [
                "Tensors", "Kernels", "Models", "Wire", "Transport", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The cluster file and the launcher's plan: which commands start which process on which host.
        .target(
            name: "Cluster",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: strictSettings
        ),

        // The HTTP API's request bodies parsed and checked, and its error envelope: pure, without
        // Hummingbird, so it is tested, and fuzzed (Fuzz/), without building the server.
        .target(
            name: "APIRequests",
            dependencies: [
                "Coordinator", "Tokenization", .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "Server",
            dependencies: [
                "APIRequests", "Coordinator", "Tokenization", "Tensors",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),

        // tier 4
        .executableTarget(
            name: "SwitchyardCLI",
            dependencies: [
                "Tensors", "Kernels", "Models", "Tokenization", "Wire", "Transport", "Coordinator", "ExpertWorker", "Cluster",
                "Server",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),

        // tests
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: strictSettings),
        .testTarget(
            name: "TokenizationTests",
            dependencies: ["Tokenization", "TestSupport"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ModelsTests",
            dependencies: ["Tensors", "Kernels", "Models", "TestSupport"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "WireTests",
            dependencies: ["Tensors", "Wire", "Transport", "TestSupport"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "CoordinatorTests",
            dependencies: [
                "Tensors", "Models", "Wire", "Transport", "Coordinator", "ExpertWorker", "Tokenization", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ExpertWorkerTests",
            dependencies: ["Tensors", "Models", "Wire", "ExpertWorker", "TestSupport"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ClusterTests",
            dependencies: ["Cluster", "TestSupport"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ServerTests",
            dependencies: [
                "Server", "APIRequests", "Coordinator", "Tokenization", "Tensors", "TestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["SwitchyardCLI", "Tensors", "Models", "Tokenization", "Wire", "Transport", "TestSupport"],
            swiftSettings: strictSettings
        ),
    ]
)
