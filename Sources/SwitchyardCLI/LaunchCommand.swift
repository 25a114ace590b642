import ArgumentParser
import Cluster
import Coordinator
import Foundation
import Models
import Synchronization
import Tensors
import Transport

/// `switchyard launch`: starts a whole cluster from a cluster file and stops it as one.
struct Launch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "launch",
        abstract: "Start every worker on its host, then the coordinator, from one cluster file; stop them all on Ctrl-C.",
        discussion: """
            Hosts are reached with `ssh HOST -- COMMAND` unless the cluster file gives a host a \
            command_prefix (`[ip, netns, exec, NAME]`, `[docker, exec, -i, NAME]`, `[srun, -w, NODE]`; \
            `[]` runs on this machine). The launcher waits until every worker registered and the \
            coordinator's /health answers 200, prints the placement, and streams every process's log \
            lines prefixed with its name. On Ctrl-C or SIGTERM it stops the coordinator, then the \
            workers; a process that does not stop in --stop-timeout seconds is killed on its host. \
            Every process it starts also stops when the launcher's pipe to it closes, so even a killed \
            launcher leaves no process behind.

            Cluster file (YAML or JSON; see Deploy/launch/cluster.example.yaml):
              model: /srv/models/mixtral
              switchyard: /usr/local/bin/switchyard
              hosts:
                gpu1: {ssh: admin@10.0.0.2}
                ns1: {command_prefix: [ip, netns, exec, ns1]}
              coordinator: {host: head, bind: 10.0.0.1, zmq_port: 5555, http_port: 8080,
                            client_keys: [keys/me.pub]}
              workers:
                - {name: w0, host: gpu1, threads: 2, experts: [[0, 0], [0, 1]]}
                - {name: w1, host: ns1}
            A host not under hosts: is reached as `ssh NAME`. A worker with experts: holds exactly \
            those; the others share the experts nobody lists. The launcher makes fresh CURVE keys for \
            the coordinator and every worker and hands each its own on its standard input; client_keys: \
            (public key files here, from `switchyard keys generate`) are let in too, for `generate \
            --coordinator`, which needs the coordinator's public key that the launcher prints when ready.
            """
    )

    @Argument(help: "The cluster file.")
    var clusterFile: String

    @Flag(name: .customLong("dry-run"), help: "Print the exact commands (and the placement when the model is readable here), start nothing.")
    var dryRun = false

    @Option(name: .customLong("ready-timeout"), help: "Seconds to wait for every worker to register and /health to answer 200.")
    var readyTimeout: Int = 300

    @Option(name: .customLong("stop-timeout"), help: "Seconds each process gets to stop before it is killed on its host.")
    var stopTimeout: Double = 10

    @Flag(
        help: "Start the coordinator and every worker --insecure (plaintext, unauthenticated). By default the launcher makes fresh CURVE keys, one pair for the coordinator and one per worker, and hands each process its own on its standard input (never in its arguments or in a file).")
    var insecure = false

    func validate() throws {
        guard readyTimeout >= 1 else { throw ValidationError("--ready-timeout is \(readyTimeout), but must be at least 1") }
        guard stopTimeout > 0 else { throw ValidationError("--stop-timeout is \(stopTimeout), but must be positive") }
    }

    func run() throws {
        let url = URL(fileURLWithPath: clusterFile)
        do {
            // Expert ids can be checked here when the coordinator's model directory is readable on this
            // machine; otherwise the coordinator checks them when it starts.
            var shape: ExpertLayout? = nil
            var checkpoint: Checkpoint? = nil
            let unchecked = try ClusterFile.load(from: url)
            let modelDirectory = URL(fileURLWithPath: unchecked.coordinator.host.model)
            if FileManager.default.fileExists(atPath: modelDirectory.appendingPathComponent("config.json").path) {
                let loaded = try Checkpoint(directory: modelDirectory)
                checkpoint = loaded
                shape = ExpertLayout(expertCounts: loaded.shape.expertCounts)
            }
            let cluster = try ClusterFile.load(from: url, model: shape)
            let placement = try checkpoint.map { checkpoint in
                try Placement.load(
                    json: Data(cluster.placementJSON.utf8), source: url.lastPathComponent,
                    expertCounts: checkpoint.shape.expertCounts)
            }
            let keys = insecure ? nil : try Self.freshKeys(for: cluster)
            let plan = LaunchPlan(cluster: cluster, readyTimeoutSeconds: readyTimeout, keys: keys)
            if dryRun {
                for command in plan.workers + [plan.coordinator] {
                    print("# \(command.label) on \(command.host.name)")
                    print(command.argv.map(shellQuoted).joined(separator: " "))
                }
                print("# wait until the coordinator is ready")
                print(plan.healthProbe.map(shellQuoted).joined(separator: " "))
                print(Self.describe(placement: placement, cluster: cluster))
                return
            }
            if shape == nil {
                note("\(modelDirectory.path) is not readable here; the coordinator checks the experts in \(url.lastPathComponent) when it starts")
            }
            StopSignal.install()
            let status = try Launcher(plan: plan, stopTimeout: stopTimeout).run {
                // Straight to the file descriptor: stdout may be a pipe, and this line must not wait in a buffer.
                let text = Self.describe(placement: placement, cluster: cluster) + "\n"
                    + "cluster ready: http://\(cluster.coordinator.address):\(cluster.coordinator.httpPort) (workers connect to \(plan.workerEndpoint)); Ctrl-C stops it\n"
                    + (keys.map { "coordinator public key (for `generate --coordinator-key`): \($0.coordinator.publicKey)\n" } ?? "")
                FileHandle.standardOutput.write(Data(text.utf8))
            }
            if status != 0 { throw ExitCode(status) }
        } catch let error as ExitCode {
            throw error
        } catch {
            fail("\(error)")
        }
    }

    /// A new key pair for the coordinator and for each worker.
    static func freshKeys(for cluster: ClusterFile) throws -> LaunchKeys {
        func pair() throws -> LaunchKeys.Pair {
            let keys = try CurveKeyPair.generate()
            return LaunchKeys.Pair(publicKey: keys.publicKey.z85, secretKey: keys.secretKey.z85)
        }
        var workers: [String: LaunchKeys.Pair] = [:]
        for worker in cluster.workers { workers[worker.name] = try pair() }
        var clients: [String: String] = [:]
        for file in cluster.coordinator.clientKeys {
            let name = "client-" + URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
            clients[name] = try KeyFiles.publicKey(file).z85
        }
        return LaunchKeys(coordinator: try pair(), workers: workers, clients: clients)
    }

    /// The placement as a table: each worker, its host, and the experts it holds.
    static func describe(placement: Placement?, cluster: ClusterFile) -> String {
        var lines = ["placement:"]
        for (slot, worker) in cluster.workers.enumerated() {
            let held: String
            if let placement {
                held = summary(placement.experts(ofWorker: slot))
            } else {
                held = worker.experts.map { "\($0.count) listed experts" } ?? "a share of the unlisted experts"
            }
            lines.append("  \(worker.name) on \(worker.host.name): \(held)")
        }
        return lines.joined(separator: "\n")
    }

    /// "16 experts: layers 0-3 × experts 0,1,2,3", or per layer when layers differ.
    static func summary(_ experts: [LayerExpert]) -> String {
        guard !experts.isEmpty else { return "no experts" }
        var byLayer: [Int: [Int]] = [:]
        for pair in experts { byLayer[pair.layer.rawValue, default: []].append(pair.expert.rawValue) }
        let layers = byLayer.keys.sorted()
        func list(_ values: [Int]) -> String {
            let sorted = values.sorted()
            if let first = sorted.first, let last = sorted.last, sorted.count == last - first + 1, sorted.count > 2 {
                return "\(first)-\(last)"
            }
            return sorted.map(String.init).joined(separator: ",")
        }
        let sets = Set(layers.map { byLayer[$0]!.sorted() })
        if sets.count == 1 {
            return "\(experts.count) experts: layers \(list(layers)) × experts \(list(byLayer[layers[0]]!))"
        }
        return "\(experts.count) experts: " + layers.map { "layer \($0): \(list(byLayer[$0]!))" }.joined(separator: "; ")
    }
}

/// Writes one launcher line to stderr.
private func note(_ message: String) {
    LogSink.shared.write("launch: \(message)")
}

/// Serialises whole lines from many processes onto our stderr.
final class LogSink: Sendable {
    static let shared = LogSink()
    private let lock = Mutex<Void>(())
    func write(_ line: String) {
        lock.withLock { _ in FileHandle.standardError.write(Data((line + "\n").utf8)) }
    }
}

/// One process started by the launcher on a host: its pipes, its log prefix, its pid on the host.
final class HostProcess: @unchecked Sendable {
    // @unchecked: `process` is configured before `run()` and afterwards only read, signalled or
    // waited on (Foundation allows that from any thread); `state` is behind a Mutex.
    let label: String
    let command: LaunchCommand?
    let process = Process()
    private let stdinPipe = Pipe()
    private struct State {
        var remotePID: Int32?
        var partial: [String: Data] = [:]
        var stdinClosed = false
    }
    private let state = Mutex(State())

    init(label: String, argv: [String], command: LaunchCommand?) {
        self.label = label
        self.command = command
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = argv
    }

    var remotePID: Int32? { state.withLock { $0.remotePID } }
    var isRunning: Bool { process.isRunning }

    func start() throws {
        let out = Pipe()
        let err = Pipe()
        process.standardInput = stdinPipe
        process.standardOutput = out
        process.standardError = err
        for (stream, pipe) in [("out", out), ("err", err)] {
            pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
                let chunk = handle.availableData
                guard let self else { return }
                if chunk.isEmpty {
                    handle.readabilityHandler = nil
                    self.flush(stream)
                } else {
                    self.take(chunk, stream: stream)
                }
            }
        }
        do { try process.run() } catch {
            throw LaunchError("cannot start \(label) (\(process.arguments?.first ?? "")): \(error.localizedDescription)")
        }
        // The keys go first (a few hundred bytes: the pipe takes them without blocking); the pipe then
        // stays open, as --exit-with-stdin needs.
        if let prefix = command?.standardInputPrefix, !prefix.isEmpty {
            try? stdinPipe.fileHandleForWriting.write(contentsOf: Data(prefix.utf8))
        }
    }

    private func take(_ chunk: Data, stream: String) {
        var lines: [String] = []
        state.withLock { state in
            var buffer = state.partial[stream, default: Data()]
            buffer.append(chunk)
            while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex...newline)
                if state.remotePID == nil, let pid = LaunchCommand.announcedPID(in: line) {
                    state.remotePID = pid
                } else {
                    lines.append(line)
                }
            }
            state.partial[stream] = buffer
        }
        for line in lines { LogSink.shared.write("[\(label)] \(line)") }
    }

    private func flush(_ stream: String) {
        let rest = state.withLock { state -> Data in
            defer { state.partial[stream] = Data() }
            return state.partial[stream, default: Data()]
        }
        if !rest.isEmpty { LogSink.shared.write("[\(label)] \(String(decoding: rest, as: UTF8.self))") }
    }

    /// Closes the process's standard input: a process started with --exit-with-stdin stops.
    func closeStdin() {
        let alreadyClosed = state.withLock { state in
            defer { state.stdinClosed = true }
            return state.stdinClosed
        }
        if !alreadyClosed { try? stdinPipe.fileHandleForWriting.close() }
    }

    /// Kills the local process group (the transport and anything it started here).
    func killLocally() {
        guard process.isRunning else { return }
        // Foundation starts every child as the leader of its own process group.
        kill(-process.processIdentifier, SIGKILL)
        kill(process.processIdentifier, SIGKILL)
    }
}

/// Starts the plan's processes, waits for readiness, and stops everything on a signal or a failure.
struct Launcher {
    let plan: LaunchPlan
    let stopTimeout: Double

    /// Runs until Ctrl-C/SIGTERM (status 0 after a clean stop) or until a process fails (status 1).
    func run(onReady: () -> Void) throws -> Int32 {
        var processes: [HostProcess] = []
        var probe: HostProcess? = nil
        defer { stop(processes, probe: probe) }
        for command in plan.workers + [plan.coordinator] {
            let process = HostProcess(label: command.label, argv: command.argv, command: command)
            processes.append(process)
            note("starting \(command.label) on \(command.host.name)")
            try process.start()
        }
        let healthProbe = HostProcess(label: "health", argv: plan.healthProbe, command: nil)
        probe = healthProbe
        try healthProbe.start()
        var ready = false
        while !StopSignal.isStopped {
            if let exited = processes.first(where: { !$0.isRunning }) {
                let status = exited.process.terminationStatus
                note("\(exited.label) exited with status \(status)\(ready ? "" : " before the cluster was ready"); stopping the cluster")
                if status == 0 && !ready {
                    // A clean exit this early is what a closed standard input causes (--exit-with-stdin).
                    note("a started process stops when its standard input closes: does \(exited.label)'s command prefix pass stdin through (docker exec -i)?")
                }
                return 1
            }
            if !ready && !healthProbe.isRunning {
                guard healthProbe.process.terminationStatus == 0 else {
                    note("the coordinator did not become ready (see the health line above); stopping the cluster")
                    return 1
                }
                ready = true
                onReady()
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        note("stopping the cluster")
        return 0
    }

    /// Stops the coordinator first (it tells the workers to leave), then the workers; whatever is
    /// still running after `stopTimeout` is killed on its host through its transport, then here.
    func stop(_ processes: [HostProcess], probe: HostProcess?) {
        probe?.closeStdin()
        probe?.killLocally()
        let coordinators = processes.filter { $0.label == plan.coordinator.label }
        let workers = processes.filter { $0.label != plan.coordinator.label }
        for group in [coordinators, workers] {
            for process in group { process.closeStdin() }
            waitUntilStopped(group, seconds: stopTimeout)
        }
        let stuck = processes.filter(\.isRunning)
        var killers: [HostProcess] = []
        for process in stuck {
            if let pid = process.remotePID, let command = process.command {
                note("\(process.label) did not stop within \(stopTimeout) s; killing pid \(pid) on \(command.host.name)")
                let killer = HostProcess(label: "\(process.label) kill", argv: command.killArgv(pid: pid), command: nil)
                if (try? killer.start()) != nil { killers.append(killer) }
            }
        }
        waitUntilStopped(killers + stuck, seconds: stopTimeout)
        for process in processes + killers where process.isRunning {
            note("\(process.label): killing the local process group \(process.process.processIdentifier)")
            process.killLocally()
        }
        for process in processes + killers { process.process.waitUntilExit() }
        note("cluster stopped")
    }

    private func waitUntilStopped(_ processes: [HostProcess], seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        while processes.contains(where: \.isRunning) && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
    }
}

/// A process the launcher could not start.
struct LaunchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
