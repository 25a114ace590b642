import Foundation
import TestSupport
import Testing
import Wire

/// Whether `protoc-c` is on PATH (CI installs it; the regeneration check needs it).
let protocCAvailable: Bool = {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    return path.split(separator: ":").contains { directory in
        FileManager.default.isExecutableFile(atPath: "\(directory)/protoc-c")
    }
}()

@Suite("Protocol schema")
struct ProtocolSchemaTests {
    @Test("the Swift protocol version equals the ProtocolVersion enum of wire.proto")
    func versionMatchesSchema() {
        #expect(ProtocolVersion.current == WireCodec.schemaProtocolVersion)
        #expect(ProtocolVersion.current == ProtocolVersion(major: 1, minor: 0))
    }

    @Test(
        "peers are compatible exactly when their major versions are equal",
        arguments: [
            (ProtocolVersion(major: 1, minor: 0), true), (ProtocolVersion(major: 1, minor: 9), true),
            (ProtocolVersion(major: 0, minor: 0), false), (ProtocolVersion(major: 2, minor: 0), false),
        ])
    func compatibility(other: ProtocolVersion, compatible: Bool) {
        #expect(ProtocolVersion.current.isCompatible(with: other) == compatible)
    }

    @Test(
        "the committed protobuf-c code is what Scripts/generate-protos.sh generates from Protos/",
        .enabled(
            if: protocCAvailable || ContinuousIntegration.required,
            "protoc-c is not installed (apt install protobuf-c-compiler); CI runs this check"),
        .timeLimit(.minutes(1)))
    func generatedCodeIsUpToDate() throws {
        try #require(protocCAvailable, "SWITCHYARD_CI=1, but protoc-c is not installed (Deploy/install-deps.sh installs it)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [TestPaths.packageRoot.appendingPathComponent("Scripts/generate-protos.sh").path, "--check"]
        // Run from elsewhere: the script must not depend on the working directory.
        process.currentDirectoryURL = FileManager.default.temporaryDirectory
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "generate-protos.sh --check failed:\n\(text)")
    }
}
