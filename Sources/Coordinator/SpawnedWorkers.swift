// Worker processes started on this machine by `switchyard generate --spawn-workers N`.
public import Foundation

/// Child `switchyard worker` processes that live as long as the command that started them.
public final class SpawnedWorkers {
    public struct Child {
        public let name: String
        public let process: Process
    }

    public private(set) var children: [Child] = []

    /// Starts one worker of `executable` per name, connecting to `coordinator`, with `environment`
    /// added to ours (how their keys reach them: unlike arguments, the environment is private to the user).
    /// Their stderr goes to ours, so their log lines and errors are visible.
    public init(
        names: [String], executable: URL, coordinator: String, model: URL, environment: [String: String] = [:],
        extraArguments: [String] = []
    ) throws {
        for name in names {
            let process = Process()
            process.executableURL = executable
            process.arguments = [
                "worker", "--coordinator", coordinator, "--model", model.path, "--name", name,
                "--parent-pid", "\(getpid())",
            ] + extraArguments
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = FileHandle.standardError
            do {
                try process.run()
            } catch {
                terminate()
                throw GenerationError.unavailable("could not start worker \(name) (\(executable.path)): \(error)")
            }
            children.append(Child(name: name, process: process))
        }
    }

    /// A reason to stop waiting when a worker exited before it should have.
    public var exitedEarly: String? {
        for child in children where !child.process.isRunning {
            return "worker \(child.name) (pid \(child.process.processIdentifier)) exited with status "
                + "\(child.process.terminationStatus) before it was ready; its error is printed above"
        }
        return nil
    }

    /// Waits up to `grace` for the workers to exit (after BYE), then terminates the rest.
    public func stop(grace: Duration = .seconds(5)) {
        let deadline = ContinuousClock.now + grace
        while children.contains(where: { $0.process.isRunning }) && ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.02)
        }
        terminate()
    }

    private func terminate() {
        for child in children where child.process.isRunning {
            child.process.terminate()
        }
        for child in children { child.process.waitUntilExit() }
    }

    deinit { terminate() }
}
