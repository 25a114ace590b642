// Running the `switchyard` binary from tests: bounded in time, output captured, always cleaned up.
public import Foundation

/// The outcome of a finished process.
public struct ProcessOutput: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

/// Errors from running test processes.
public struct TestProcessError: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// Runs `switchyard` with arguments, waiting at most `timeout`; kills it if it runs longer.
/// `environment` entries are added to (or replace) this process's environment.
public func runSwitchyard(
    _ arguments: [String], timeout: Duration = .seconds(300), environment: [String: String] = [:]
) throws -> ProcessOutput {
    let process = SwitchyardProcess(arguments, environment: environment)
    try process.start()
    return try process.wait(timeout: timeout)
}

/// A `switchyard` process in the background whose stdout/stderr are collected as they arrive.
public final class SwitchyardProcess: @unchecked Sendable {
    // @unchecked: the output buffers are only touched under `lock`; `process` is started once and
    // then only read or terminated, which Foundation's Process allows from any thread.
    private let process = Process()
    private let lock = NSLock()
    private var stdoutData = Data()
    private var stderrData = Data()
    public let arguments: [String]

    public init(_ arguments: [String], binary: URL = TestPaths.switchyardBinary, environment: [String: String] = [:]) {
        self.arguments = arguments
        process.executableURL = binary
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
    }

    public var processIdentifier: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    public func start() throws {
        guard FileManager.default.isExecutableFile(atPath: process.executableURL!.path) else {
            throw TestProcessError(description: "switchyard binary not found at \(process.executableURL!.path); build first")
        }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        out.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let chunk = handle.availableData
            guard let self, !chunk.isEmpty else { return }
            self.lock.withLock { self.stdoutData.append(chunk) }
        }
        err.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let chunk = handle.availableData
            guard let self, !chunk.isEmpty else { return }
            self.lock.withLock { self.stderrData.append(chunk) }
        }
        try process.run()
    }

    /// Output so far.
    public var stdout: String { lock.withLock { String(decoding: stdoutData, as: UTF8.self) } }
    public var stderr: String { lock.withLock { String(decoding: stderrData, as: UTF8.self) } }

    /// Waits until `condition` holds on stderr, the process exits, or `timeout` passes.
    public func waitForStderr(
        timeout: Duration = .seconds(60), _ condition: (String) -> Bool
    ) throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let text = stderr
            if condition(text) { return text }
            if !process.isRunning {
                throw TestProcessError(
                    description: "switchyard \(arguments.joined(separator: " ")) exited (\(process.terminationStatus)) before the expected output; stderr:\n\(text)")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw TestProcessError(description: "timed out waiting for output of switchyard \(arguments.joined(separator: " ")); stderr:\n\(stderr)")
    }

    /// Waits for exit; after `timeout` the process is killed and an error thrown.
    public func wait(timeout: Duration) throws -> ProcessOutput {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.02)
        }
        if process.isRunning {
            kill()
            throw TestProcessError(
                description: "switchyard \(arguments.joined(separator: " ")) did not finish within \(timeout); stderr:\n\(stderr)")
        }
        process.waitUntilExit()
        // Let the readability handlers drain what is left in the pipes.
        Thread.sleep(forTimeInterval: 0.05)
        return ProcessOutput(status: process.terminationStatus, stdout: stdout, stderr: stderr)
    }

    /// SIGTERM, then SIGKILL if it is still running after a second.
    public func kill() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = ContinuousClock.now + .seconds(1)
        while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
    }

    deinit { kill() }
}
