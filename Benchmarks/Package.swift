// swift-tools-version: 6.0
// Switchyard benchmarks: a separate package so that the root package's tests stay free of timing.
// Run in release: `cd Benchmarks && swift run -c release switchyard-bench kernels`.
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "SwitchyardBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        // `name:` pins the identity, whatever the checkout directory is called.
        .package(name: "Switchyard", path: "..")
    ],
    targets: [
        // The read pass of Benchmarks/floors (one source for both), for decode-floor; 64-byte vectors
        // where the CPU has them, as GCC builds `floors` (Clang prefers 32 bytes: see read_pass.h).
        .target(name: "CReadPass", cSettings: [.unsafeFlags(["-O3", "-march=native", "-mprefer-vector-width=512"])]),
        .executableTarget(
            name: "switchyard-bench",
            dependencies: [
                "CReadPass",
                .product(name: "SwitchyardCoordinator", package: "Switchyard"),
                .product(name: "SwitchyardModels", package: "Switchyard"),
                .product(name: "SwitchyardTokenization", package: "Switchyard"),
                .product(name: "SwitchyardKernels", package: "Switchyard"),
                .product(name: "SwitchyardTensors", package: "Switchyard"),
            ],
            swiftSettings: strictSettings
        )
    ]
)
