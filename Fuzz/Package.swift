// swift-tools-version: 6.0
// Switchyard fuzz targets: a separate package so that the root package builds without sanitizers.
// Each executable is a libFuzzer target (`LLVMFuzzerTestOneInput`); build and run them all with
// `bash Scripts/fuzz.sh [SECONDS_PER_TARGET]`, which builds with libFuzzer and AddressSanitizer
// (`--sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library`:
// libFuzzer supplies `main`; the script says why the flags are repeated).
//
// Debug builds on purpose: SwiftPM compiles them with `-enable-testing`, so the targets reach the
// internal and package-level code (the coordinator's request conversion, the body parsing) through
// `@testable import` and fuzz exactly what the processes run; and Swift's overflow and bounds checks
// stay on, turning a bad input into a crash the fuzzer sees. Nothing here builds Hummingbird: the
// body parsing lives in APIRequests for that reason.
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "SwitchyardFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        // `name:` pins the identity, whatever the checkout directory is called.
        .package(name: "Switchyard", path: ".."),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
    ],
    targets: [
        // Multipart frames into WireCodec.decode and the checks a worker or coordinator runs next.
        .executableTarget(
            name: "fuzz-wire",
            dependencies: [
                .product(name: "SwitchyardWire", package: "Switchyard"),
                .product(name: "SwitchyardTensors", package: "Switchyard"),
                .product(name: "SwitchyardCoordinator", package: "Switchyard"),
            ],
            swiftSettings: strictSettings
        ),
        // /v1/completions, /v1/chat/completions and /v1/placement bodies through the server's parsing.
        .executableTarget(
            name: "fuzz-http-body",
            dependencies: [
                .product(name: "SwitchyardAPIRequests", package: "Switchyard"),
                .product(name: "SwitchyardCoordinator", package: "Switchyard"),
                .product(name: "SwitchyardTokenization", package: "Switchyard"),
                .product(name: "SwitchyardTensors", package: "Switchyard"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: strictSettings
        ),
    ]
)
