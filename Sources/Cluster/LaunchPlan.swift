// The launcher's plan: the exact command lines that start every worker and the coordinator on their
// hosts, probe the coordinator's health, and stop a process on its host. Pure: no processes here.
import Foundation

/// One process the launcher starts on a host.
public struct LaunchCommand: Sendable, Equatable {
    /// The worker's name, or "coordinator"; log lines of the process are prefixed with it.
    public var label: String
    public var host: HostSpec
    /// The command as it runs on the host (`switchyard worker ...`).
    public var command: [String]
    /// Written to the process's standard input first (its keys, for `--keys-from-stdin`): it
    /// reaches the host through the same transport as the command, and appears in no process list.
    public var standardInputPrefix: String

    /// A process labelled `label` running `command` on `host`.
    public init(label: String, host: HostSpec, command: [String], standardInputPrefix: String = "") {
        self.label = label
        self.host = host
        self.command = command
        self.standardInputPrefix = standardInputPrefix
    }

    /// The line a launched process prints first (on stderr) so the launcher learns its pid on the host.
    public static let pidMarker = "switchyard-launch: pid "

    /// What the launcher runs locally: the transport around a `sh` that announces its pid on the host
    /// and then becomes the command (`exec`), so that pid is the process's own.
    public var argv: [String] {
        host.transport.wrap(["sh", "-c", "echo \"\(Self.pidMarker)$$\" >&2; exec \"$@\"", "sh"] + command)
    }

    /// What stops the process on its host when closing its standard input was not enough.
    public func killArgv(pid: Int32, signal: String = "KILL") -> [String] {
        host.transport.wrap(["kill", "-\(signal)", "\(pid)"])
    }

    /// Reads a pid announced by `argv`'s shell from one line of the process's stderr.
    public static func announcedPID(in line: String) -> Int32? {
        guard line.hasPrefix(pidMarker) else { return nil }
        return Int32(line.dropFirst(pidMarker.count).trimmingCharacters(in: .whitespaces))
    }
}

/// The CURVE keys of one launch, as Z85 text: the coordinator's pair and one pair per worker.
/// The launcher makes them fresh each time and hands each process its own through its standard input.
public struct LaunchKeys: Sendable, Equatable {
    public struct Pair: Sendable, Equatable {
        public var publicKey: String
        public var secretKey: String
        public init(publicKey: String, secretKey: String) {
            self.publicKey = publicKey
            self.secretKey = secretKey
        }
    }

    public var coordinator: Pair
    /// By worker name.
    public var workers: [String: Pair]
    /// Public keys of clients the coordinator accepts too, by name (the cluster file's `client_keys`).
    public var clients: [String: String]

    public init(coordinator: Pair, workers: [String: Pair], clients: [String: String] = [:]) {
        self.coordinator = coordinator
        self.workers = workers
        self.clients = clients
    }

    /// What `serve --keys-from-stdin` reads: `secret KEY`, then `allow NAME KEY` per worker and
    /// client, then a blank line.
    public var coordinatorInput: String {
        let allowed = workers.mapValues(\.publicKey).merging(clients) { worker, _ in worker }
        return (["secret \(coordinator.secretKey)"] + allowed.keys.sorted().map { "allow \($0) \(allowed[$0]!)" })
            .joined(separator: "\n") + "\n\n"
    }

    /// What `worker --keys-from-stdin` reads: `secret KEY`, `coordinator KEY`, then a blank line.
    public func workerInput(_ name: String) -> String {
        "secret \(workers[name]?.secretKey ?? "")\ncoordinator \(coordinator.publicKey)\n\n"
    }
}

/// Everything `switchyard launch` runs, in order: the workers, then the coordinator, then the probe
/// that waits (on the coordinator's host) until `/health` answers 200.
public struct LaunchPlan: Sendable, Equatable {
    /// One command per worker, started first.
    public var workers: [LaunchCommand]
    /// `switchyard serve`, started after the workers.
    public var coordinator: LaunchCommand
    /// Runs `switchyard health --wait` on the coordinator's host.
    public var healthProbe: [String]
    /// The coordinator's HTTP API as clients on its host reach it.
    public var healthURL: String
    /// The endpoint workers connect to.
    public var workerEndpoint: String

    /// The commands for `cluster`; the health probe gives up after `readyTimeoutSeconds`. With
    /// `keys` every process reads its keys from its standard input; without, all run `--insecure`.
    public init(cluster: ClusterFile, readyTimeoutSeconds: Int, keys: LaunchKeys?) {
        let c = cluster.coordinator
        let security = keys == nil ? ["--insecure"] : ["--keys-from-stdin"]
        workerEndpoint = "tcp://\(c.address):\(c.zmqPort)"
        workers = cluster.workers.map { worker in
            LaunchCommand(
                label: worker.name, host: worker.host,
                command: [
                    worker.host.switchyard, "worker", "--coordinator", "tcp://\(c.address):\(c.zmqPort)",
                    "--model", worker.host.model, "--name", worker.name, "--threads", "\(worker.threads)",
                    "--exit-with-stdin",
                ] + security + worker.options,
                standardInputPrefix: keys?.workerInput(worker.name) ?? "")
        }
        coordinator = LaunchCommand(
            label: "coordinator", host: c.host,
            command: [
                c.host.switchyard, "serve", "--model", c.host.model, "--bind", "tcp://\(c.bind):\(c.zmqPort)",
                "--workers", "\(cluster.workers.count)", "--placement-json", cluster.placementJSON,
                "--http", "\(c.bind):\(c.httpPort)", "--threads", "\(c.threads)", "--exit-with-stdin",
            ] + security + c.options,
            standardInputPrefix: keys?.coordinatorInput ?? "")
        // The probe runs on the coordinator's host, so it reaches a wildcard bind through loopback.
        let probeAddress = ["0.0.0.0", "::", "*"].contains(c.bind) ? "127.0.0.1" : c.bind
        healthURL = "http://\(probeAddress):\(c.httpPort)"
        healthProbe = c.host.transport.wrap([
            c.host.switchyard, "health", "--server", healthURL, "--wait", "\(readyTimeoutSeconds)",
        ])
    }
}
