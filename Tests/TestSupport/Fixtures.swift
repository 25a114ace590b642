// Shared test fixtures: where committed fixtures live and where the built `switchyard` binary is.
public import Foundation

/// Paths shared by every test target.
public enum TestPaths {
    /// The package root, found from this source file's location.
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // TestSupport
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    /// `Tests/Fixtures`.
    public static let fixtures: URL = packageRoot.appendingPathComponent("Tests/Fixtures")

    /// The `switchyard` executable built next to the running test bundle.
    public static var switchyardBinary: URL {
        let bundleDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return bundleDirectory.appendingPathComponent("switchyard")
    }

    /// This test process's scratch directory, `switchyard-tests-PID` in the system's temporary
    /// directory: every file a test writes goes under it, and it is removed when the process exits
    /// (also when tests failed), so runs do not pile up files in /tmp.
    public static let scratch: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("switchyard-tests-\(getpid())")
        try? FileManager.default.removeItem(at: url)  // a crashed process's, whose PID this one reuses
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        scratchPath = url.path
        atexit { if let path = scratchPath { try? FileManager.default.removeItem(atPath: path) } }
        return url
    }()

    /// `scratch`'s path, for the exit handler (a C function pointer captures nothing).
    nonisolated(unsafe) private static var scratchPath: String?

    /// A fresh empty directory under `scratch`.
    public static func makeTemporaryDirectory(_ prefix: String = "switchyard-test") throws -> URL {
        let url = scratch.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
