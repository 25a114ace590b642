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
    // @unchecked: `process` is started once and then only read or terminated, which Foundation's
    // Process allows from any thread.
    private let process = Process()
    // Held by the reader threads too (not `self`, so that deinit still kills an abandoned process).
    private let output = CapturedOutput()
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
        try process.run()
        // The child holds the write ends now; the parent's copies must close, or the pipes never
        // reach end of file.
        try? out.fileHandleForWriting.close()
        try? err.fileHandleForWriting.close()
        // One blocking reader thread per pipe, reading to end of file. (Foundation's
        // readabilityHandler on Linux sometimes never reports end of file and loses the last
        // chunk, which cut CLI tests' JSON short under load.)
        for (pipe, isStdout) in [(out, true), (err, false)] {
            let handle = pipe.fileHandleForReading
            Thread { [output] in
                // read(2) returns what the pipe holds now (FileHandle.read(upToCount:) waits for the
                // whole count or end of file, which holds back a server's startup line).
                var buffer = [UInt8](repeating: 0, count: 1 << 16)
                while true {
                    let count = buffer.withUnsafeMutableBytes { read(handle.fileDescriptor, $0.baseAddress, $0.count) }
                    if count < 0 && errno == EINTR { continue }
                    guard count > 0 else { break }
                    output.append(Data(buffer[0..<count]), stdout: isStdout)
                }
                try? handle.close()
                output.endOfFile.signal()
            }.start()
        }
    }

    /// Output so far.
    public var stdout: String { output.text(stdout: true) }
    public var stderr: String { output.text(stdout: false) }

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
        // Read both pipes to end of file, so output written just before exit is all here (a fixed
        // pause would cut it short under load). A process the child left holding a pipe open is
        // an error of its own, after a generous bound.
        for pipe in ["stdout", "stderr"] {
            guard output.endOfFile.wait(timeout: .now() + .seconds(60)) == .success else {
                throw TestProcessError(
                    description: "switchyard \(arguments.joined(separator: " ")) exited, but its \(pipe) did not reach end of file within 60 s (a process it started still holds it?); stderr:\n\(stderr)")
            }
        }
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

/// A child's stdout and stderr as they arrive, appended by the reader threads.
private final class CapturedOutput: @unchecked Sendable {
    // @unchecked: the buffers are only touched under `lock`.
    private let lock = NSLock()
    private var stdoutData = Data()
    private var stderrData = Data()
    /// Signalled once per pipe (stdout, stderr) when it reaches end of file.
    let endOfFile = DispatchSemaphore(value: 0)

    func append(_ chunk: Data, stdout: Bool) {
        lock.withLock {
            if stdout { stdoutData.append(chunk) } else { stderrData.append(chunk) }
        }
    }

    func text(stdout: Bool) -> String {
        lock.withLock { String(decoding: stdout ? stdoutData : stderrData, as: UTF8.self) }
    }
}
