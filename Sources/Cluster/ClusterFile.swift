// The cluster file: which hosts run the coordinator and the expert workers, how to reach them, which
// ports the coordinator listens on, and (optionally) which experts each worker holds.
//
// Vocabulary: a *host* is a machine (or a namespace, container, Slurm node) reached through a
// *transport*: ssh (the default) or a command prefix such as `ip netns exec NAME`. The file is YAML
// (JSON is YAML too); every error names the file, the line and column, the field, and what would be
// valid.
public import Foundation
import Yams

/// An error in a cluster file: where it is and what would be valid.
public struct ClusterFileError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// How the launcher reaches a host.
public enum Transport: Sendable, Equatable {
    /// `ssh [options] DESTINATION -- COMMAND`; the remote shell re-splits the command, so every
    /// argument is shell-quoted.
    case ssh(destination: String, options: [String])
    /// `PREFIX... COMMAND...`, run on this machine: the prefix executes the command as separate
    /// arguments (`ip netns exec NAME`, `docker exec -i NAME`, `srun -w NODE`); `[]` runs it here.
    case prefix([String])

    /// The full argument vector that runs `command` on the host.
    public func wrap(_ command: [String]) -> [String] {
        switch self {
        case .ssh(let destination, let options):
            // BatchMode: never stop at a password prompt; `--` ends ssh's own options.
            return ["ssh", "-o", "BatchMode=yes"] + options + [destination, "--"] + command.map(shellQuoted)
        case .prefix(let prefix):
            return prefix + command
        }
    }
}

/// One host of the cluster file.
public struct HostSpec: Sendable, Equatable {
    /// The host's name in the cluster file.
    public var name: String
    /// How the launcher runs commands there.
    public var transport: Transport
    /// The model directory on this host.
    public var model: String
    /// The `switchyard` executable on this host.
    public var switchyard: String

    public init(name: String, transport: Transport, model: String, switchyard: String) {
        self.name = name
        self.transport = transport
        self.model = model
        self.switchyard = switchyard
    }
}

/// The coordinator's place and ports.
public struct CoordinatorSpec: Sendable, Equatable {
    /// The host it runs on.
    public var host: HostSpec
    /// The address its sockets bind to (`0.0.0.0` for every interface).
    public var bind: String
    /// The address workers and the health probe use to reach it.
    public var address: String
    /// The port of the ZeroMQ socket workers connect to.
    public var zmqPort: Int
    /// The port of the HTTP API.
    public var httpPort: Int
    /// `serve --threads`.
    public var threads: Int
    /// Further `switchyard serve` flags, passed as given.
    public var options: [String]
    /// Public key files (on the launcher's machine) of `generate --coordinator` clients the
    /// coordinator accepts besides the workers the launcher makes keys for.
    public var clientKeys: [String] = []
}

/// One expert worker.
public struct WorkerSpec: Sendable, Equatable {
    /// The name it registers with; placements refer to it.
    public var name: String
    /// The host it runs on.
    public var host: HostSpec
    /// `worker --threads`.
    public var threads: Int
    /// `[layer, expert]` pairs this worker holds; nil when it takes a share of the unlisted experts.
    public var experts: [[Int]]?
    /// Further `switchyard worker` flags, passed as given.
    public var options: [String]
}

/// The experts of the model's layers, to check expert ids against.
public struct ExpertLayout: Sendable, Equatable {
    /// Experts per decoder layer: 0 for a dense layer.
    public var expertCounts: [Int]
    /// Decoder layers (num_hidden_layers).
    public var layerCount: Int { expertCounts.count }
    /// A model whose `layerCount` layers all have `expertCount` experts.
    public init(layerCount: Int, expertCount: Int) {
        expertCounts = Array(repeating: expertCount, count: layerCount)
    }
    /// A model whose layer l has `expertCounts[l]` experts (0: a dense layer).
    public init(expertCounts: [Int]) { self.expertCounts = expertCounts }
}

/// A validated cluster file.
public struct ClusterFile: Sendable, Equatable {
    /// Where the coordinator runs and listens.
    public var coordinator: CoordinatorSpec
    /// The workers, in file order (the order of the placement's worker slots).
    public var workers: [WorkerSpec]

    /// Reads and validates a cluster file. With `model`, expert ids are checked against it too.
    public static func load(from url: URL, model: ExpertLayout? = nil) throws(ClusterFileError) -> ClusterFile {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw ClusterFileError("\(url.path): cannot read the cluster file (\(error.localizedDescription))")
        }
        return try parse(text, source: url.path, model: model)
    }

    /// Parses and validates the text of a cluster file; `source` names it in errors.
    public static func parse(_ text: String, source: String, model: ExpertLayout? = nil) throws(ClusterFileError) -> ClusterFile {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw ClusterFileError("\(source): the cluster file is empty; it needs coordinator: and workers:")
            }
            root = node
        } catch let error as ClusterFileError {
            throw error
        } catch {
            throw ClusterFileError("\(source): not valid YAML: \(error)")
        }
        var reader = Reader(source: source)
        return try reader.read(root, model: model)
    }

    /// The placement the coordinator is started with (`serve --placement-json`), in the shape of a
    /// placement file: every worker by name, in file order; a worker with an expert list holds
    /// exactly those (`exclusive`), the others share the unlisted experts evenly.
    public var placementJSON: String {
        let entries = workers.map { worker -> String in
            let experts = (worker.experts ?? []).map { "[\($0[0]),\($0[1])]" }.joined(separator: ",")
            let exclusive = worker.experts == nil ? "" : ",\"exclusive\":true"
            return "{\"name\":\(jsonString(worker.name)),\"experts\":[\(experts)]\(exclusive)}"
        }
        return "{\"workers\":[\(entries.joined(separator: ","))]}"
    }
}

/// Quotes `text` for a POSIX shell when it contains anything but safe characters.
public func shellQuoted(_ text: String) -> String {
    let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-")
    if !text.isEmpty && text.allSatisfy({ safe.contains($0) }) { return text }
    return "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

private func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

// MARK: - Reading the YAML tree

/// Walks the YAML tree, checking every field; errors carry `source:line:column`.
private struct Reader {
    let source: String

    func fail(_ node: Node?, _ message: String) -> ClusterFileError {
        if let mark = node?.mark { return ClusterFileError("\(source):\(mark.line):\(mark.column): \(message)") }
        return ClusterFileError("\(source): \(message)")
    }

    /// The mapping at `node` as ordered (key, key node, value) triples; unknown keys are errors.
    func mapping(_ node: Node, _ path: String, allowed: [String]) throws(ClusterFileError) -> [String: (key: Node, value: Node)] {
        guard let mapping = node.mapping else {
            throw fail(node, "\(path) must be a mapping with the keys \(allowed.joined(separator: ", "))")
        }
        var result: [String: (key: Node, value: Node)] = [:]
        for (key, value) in mapping {
            guard let name = key.scalar?.string else { throw fail(key, "\(path) has a key that is not a name") }
            guard allowed.contains(name) else {
                throw fail(key, "\(path) has an unknown key \"\(name)\"; valid keys are \(allowed.joined(separator: ", "))")
            }
            result[name] = (key, value)
        }
        return result
    }

    func string(_ node: Node, _ path: String) throws(ClusterFileError) -> String {
        guard let scalar = node.scalar, !scalar.string.isEmpty else { throw fail(node, "\(path) must be a non-empty string") }
        return scalar.string
    }

    func int(_ node: Node, _ path: String, range: ClosedRange<Int>) throws(ClusterFileError) -> Int {
        guard let scalar = node.scalar else { throw fail(node, "\(path) must be a whole number in \(range)") }
        guard let value = Int(scalar.string), range.contains(value) else {
            throw fail(node, "\(path) is \"\(scalar.string)\", but must be a whole number in \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    func strings(_ node: Node, _ path: String) throws(ClusterFileError) -> [String] {
        guard let sequence = node.sequence else { throw fail(node, "\(path) must be a list of strings, e.g. [ip, netns, exec, h1]") }
        var result: [String] = []
        for (index, item) in sequence.enumerated() {
            guard let scalar = item.scalar else { throw fail(item, "\(path)[\(index)] must be a string") }
            result.append(scalar.string)
        }
        return result
    }

    mutating func read(_ root: Node, model: ExpertLayout?) throws(ClusterFileError) -> ClusterFile {
        let top = try mapping(root, "the cluster file", allowed: ["model", "switchyard", "hosts", "coordinator", "workers"])
        let defaultModel = try top["model"].map { entry throws(ClusterFileError) in try string(entry.value, "model") }
        let defaultBinary = try top["switchyard"].map { entry throws(ClusterFileError) in try string(entry.value, "switchyard") } ?? "switchyard"

        // hosts: name -> how to reach it (and its own model / binary paths).
        var hosts: [String: HostSpec] = [:]
        if let hostsEntry = top["hosts"] {
            guard let hostsMapping = hostsEntry.value.mapping else {
                throw fail(hostsEntry.value, "hosts must be a mapping from host name to {ssh: DESTINATION} or {command_prefix: [...]}")
            }
            for (key, value) in hostsMapping {
                let name = try string(key, "a host name")
                let path = "hosts.\(name)"
                let fields = try mapping(value, path, allowed: ["ssh", "ssh_options", "command_prefix", "model", "switchyard"])
                if fields["ssh"] != nil && fields["command_prefix"] != nil {
                    throw fail(value, "\(path) has both ssh and command_prefix; give one (ssh DESTINATION, or a prefix like [ip, netns, exec, NAME])")
                }
                let transport: Transport
                if let prefix = fields["command_prefix"] {
                    if fields["ssh_options"] != nil { throw fail(fields["ssh_options"]!.key, "\(path).ssh_options only applies with ssh, not with command_prefix") }
                    transport = .prefix(try strings(prefix.value, "\(path).command_prefix"))
                } else {
                    let destination = try fields["ssh"].map { entry throws(ClusterFileError) in try string(entry.value, "\(path).ssh") } ?? name
                    let options = try fields["ssh_options"].map { entry throws(ClusterFileError) in try strings(entry.value, "\(path).ssh_options") } ?? []
                    transport = .ssh(destination: destination, options: options)
                }
                let hostModel = try fields["model"].map { entry throws(ClusterFileError) in try string(entry.value, "\(path).model") }
                hosts[name] = HostSpec(
                    name: name, transport: transport, model: hostModel ?? defaultModel ?? "",
                    switchyard: try fields["switchyard"].map { entry throws(ClusterFileError) in try string(entry.value, "\(path).switchyard") } ?? defaultBinary)
            }
        }
        /// A host named in coordinator/workers; one not under hosts: is reached with `ssh NAME`.
        func host(_ node: Node, _ path: String) throws(ClusterFileError) -> HostSpec {
            let name = try string(node, path)
            let spec = hosts[name] ?? HostSpec(
                name: name, transport: .ssh(destination: name, options: []), model: defaultModel ?? "", switchyard: defaultBinary)
            guard !spec.model.isEmpty else {
                throw fail(node, "\(path): host \(name) has no model path; set model: at the top of the file or hosts.\(name).model")
            }
            return spec
        }

        // coordinator
        guard let coordinatorEntry = top["coordinator"] else {
            throw fail(root, "the cluster file has no coordinator:; it needs {host: NAME, zmq_port: PORT, http_port: PORT}")
        }
        let c = try mapping(coordinatorEntry.value, "coordinator", allowed: ["host", "bind", "address", "zmq_port", "http_port", "threads", "options", "client_keys"])
        guard let coordinatorHost = c["host"] else { throw fail(coordinatorEntry.value, "coordinator.host is missing; name the host the coordinator runs on") }
        let bind = try c["bind"].map { entry throws(ClusterFileError) in try string(entry.value, "coordinator.bind") } ?? "127.0.0.1"
        let wildcard = bind == "0.0.0.0" || bind == "::" || bind == "*"
        let address: String
        if let entry = c["address"] {
            address = try string(entry.value, "coordinator.address")
        } else if wildcard {
            throw fail(c["bind"]!.value, "coordinator.bind is \(bind), so coordinator.address must say how workers reach the coordinator (an address of its host)")
        } else {
            address = bind
        }
        let zmqPort = try c["zmq_port"].map { entry throws(ClusterFileError) in try int(entry.value, "coordinator.zmq_port", range: 1...65535) } ?? 5555
        let httpPort = try c["http_port"].map { entry throws(ClusterFileError) in try int(entry.value, "coordinator.http_port", range: 1...65535) } ?? 8080
        if zmqPort == httpPort {
            let node = c["http_port"]?.value ?? c["zmq_port"]?.value ?? coordinatorEntry.value
            throw fail(node, "coordinator.http_port and coordinator.zmq_port are both \(zmqPort); the coordinator listens on both, so they must differ")
        }
        let coordinator = CoordinatorSpec(
            host: try host(coordinatorHost.value, "coordinator.host"), bind: bind, address: address,
            zmqPort: zmqPort, httpPort: httpPort,
            threads: try c["threads"].map { entry throws(ClusterFileError) in try int(entry.value, "coordinator.threads", range: 1...1024) } ?? 1,
            options: try c["options"].map { entry throws(ClusterFileError) in try strings(entry.value, "coordinator.options") } ?? [],
            clientKeys: try c["client_keys"].map { entry throws(ClusterFileError) in try strings(entry.value, "coordinator.client_keys") } ?? [])

        // workers
        guard let workersEntry = top["workers"] else {
            throw fail(root, "the cluster file has no workers:; list at least one {name: NAME, host: HOST}")
        }
        guard let workerNodes = workersEntry.value.sequence, workerNodes.count > 0 else {
            throw fail(workersEntry.value, "workers must be a non-empty list of {name: NAME, host: HOST, threads: N, experts: [[layer, expert], ...]}")
        }
        var workers: [WorkerSpec] = []
        var nameNodes: [String: Node] = [:]
        var placedBy: [[Int]: (worker: String, node: Node)] = [:]
        for (index, node) in workerNodes.enumerated() {
            let path = "workers[\(index)]"
            let w = try mapping(node, path, allowed: ["name", "host", "threads", "experts", "options"])
            guard let nameEntry = w["name"] else { throw fail(node, "\(path).name is missing; every worker needs a unique name") }
            let name = try string(nameEntry.value, "\(path).name")
            let nameCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
            guard name.allSatisfy({ nameCharacters.contains($0) }) else {
                throw fail(nameEntry.value, "\(path).name is \"\(name)\"; a worker name may use only letters, digits, '.', '_' and '-'")
            }
            if let first = nameNodes[name] {
                let line = first.mark.map { " (line \($0.line))" } ?? ""
                throw fail(nameEntry.value, "\(path).name: two workers are named \"\(name)\"\(line); worker names must be unique")
            }
            nameNodes[name] = nameEntry.value
            guard let hostEntry = w["host"] else { throw fail(node, "\(path).host is missing; name the host worker \(name) runs on") }
            var experts: [[Int]]? = nil
            if let expertsEntry = w["experts"] {
                guard let pairs = expertsEntry.value.sequence else {
                    throw fail(expertsEntry.value, "\(path).experts must be a list of [layer, expert] pairs")
                }
                var list: [[Int]] = []
                for (pairIndex, pairNode) in pairs.enumerated() {
                    let pairPath = "\(path).experts[\(pairIndex)]"
                    guard let items = pairNode.sequence, items.count == 2 else {
                        throw fail(pairNode, "\(pairPath) must be a [layer, expert] pair")
                    }
                    let layerNode = items[items.startIndex], expertNode = items[items.index(after: items.startIndex)]
                    let layer = try int(layerNode, "\(pairPath) layer", range: 0...Int(Int32.max))
                    let expert = try int(expertNode, "\(pairPath) expert", range: 0...Int(Int32.max))
                    if let model {
                        guard layer < model.layerCount else {
                            throw fail(layerNode, "\(pairPath): layer \(layer) does not exist; the model's layers are 0...\(model.layerCount - 1)")
                        }
                        let expertCount = model.expertCounts[layer]
                        guard expertCount > 0 else {
                            throw fail(layerNode, "\(pairPath): layer \(layer) is a dense layer; it has no experts to place")
                        }
                        guard expert < expertCount else {
                            throw fail(expertNode, "\(pairPath): expert \(expert) does not exist; the model's experts are 0...\(expertCount - 1)")
                        }
                    }
                    if let previous = placedBy[[layer, expert]] {
                        let line = previous.node.mark.map { " (line \($0.line))" } ?? ""
                        throw fail(pairNode, "\(pairPath): layer \(layer) expert \(expert) is already on worker \(previous.worker)\(line); an expert is listed once")
                    }
                    placedBy[[layer, expert]] = (name, pairNode)
                    list.append([layer, expert])
                }
                experts = list
            }
            workers.append(WorkerSpec(
                name: name, host: try host(hostEntry.value, "\(path).host"),
                threads: try w["threads"].map { entry throws(ClusterFileError) in try int(entry.value, "\(path).threads", range: 1...1024) } ?? 1,
                experts: experts,
                options: try w["options"].map { entry throws(ClusterFileError) in try strings(entry.value, "\(path).options") } ?? []))
        }
        // With every worker holding a fixed list, an expert nobody lists would have no worker.
        if let model, workers.allSatisfy({ $0.experts != nil }) {
            var missing: [String] = []
            for layer in 0..<model.layerCount {
                for expert in 0..<model.expertCounts[layer] where placedBy[[layer, expert]] == nil {
                    missing.append("layer \(layer) expert \(expert)")
                }
            }
            if !missing.isEmpty {
                let shown = missing.prefix(8).joined(separator: ", ") + (missing.count > 8 ? " and \(missing.count - 8) more" : "")
                throw fail(workersEntry.value,
                    "workers: \(shown) \(missing.count == 1 ? "has" : "have") no worker; every worker lists its experts, so list them or add a worker without experts: (it takes the unlisted ones)")
            }
        }
        return ClusterFile(coordinator: coordinator, workers: workers)
    }
}
