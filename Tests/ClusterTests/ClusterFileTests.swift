import Cluster
import Foundation
import Testing

private let shape = ExpertLayout(layerCount: 2, expertCount: 4)

private let validFile = """
    model: /srv/models/tiny
    switchyard: /opt/sy/switchyard
    hosts:
      head: {ssh: admin@10.0.0.1}
      ns1: {command_prefix: [ip, netns, exec, sy-h1], model: /other/tiny}
      ns2:
        command_prefix: [ip, netns, exec, sy-h2]
    coordinator:
      host: head
      bind: 10.0.0.1
      zmq_port: 5600
      http_port: 8600
      threads: 2
    workers:
      - name: w0
        host: ns1
        threads: 3
        experts: [[0, 0], [1, 3]]
      - {name: w1, host: ns2}
      - {name: w2, host: gpu9}
    """

@Suite("Cluster file")
struct ClusterFileTests {
    @Test("an expert of a dense layer in a cluster file is an error naming the layer")
    func denseLayer() {
        let dense = ExpertLayout(expertCounts: [4, 0])
        do {
            _ = try ClusterFile.parse(validFile, source: "c.yaml", model: dense)
            Issue.record("layer 1 is dense; [1, 3] must be refused")
        } catch {
            #expect(error.description.contains("layer 1 is a dense layer"), "\(error.description)")
        }
    }

    @Test("a valid cluster file gives every host its transport, model and binary")
    func valid() throws {
        let cluster = try ClusterFile.parse(validFile, source: "c.yaml", model: shape)
        #expect(cluster.coordinator.host.transport == .ssh(destination: "admin@10.0.0.1", options: []))
        #expect(cluster.coordinator.address == "10.0.0.1")
        #expect(cluster.coordinator.zmqPort == 5600 && cluster.coordinator.httpPort == 8600)
        #expect(cluster.workers.map(\.name) == ["w0", "w1", "w2"])
        #expect(cluster.workers[0].host.transport == .prefix(["ip", "netns", "exec", "sy-h1"]))
        #expect(cluster.workers[0].host.model == "/other/tiny")
        #expect(cluster.workers[1].host.model == "/srv/models/tiny")
        #expect(cluster.workers[0].threads == 3 && cluster.workers[1].threads == 1)
        #expect(cluster.workers[0].experts == [[0, 0], [1, 3]])
        #expect(cluster.workers[1].experts == nil)
        // A host not listed under hosts: is reached with ssh under its own name.
        #expect(cluster.workers[2].host.transport == .ssh(destination: "gpu9", options: []))
        #expect(cluster.workers[2].host.switchyard == "/opt/sy/switchyard")
    }

    @Test("JSON is accepted as a cluster file")
    func json() throws {
        let text = """
            {"model": "/m", "coordinator": {"host": "a", "zmq_port": 1, "http_port": 2},
             "workers": [{"name": "w0", "host": "b"}]}
            """
        let cluster = try ClusterFile.parse(text, source: "c.json")
        #expect(cluster.coordinator.bind == "127.0.0.1")
        #expect(cluster.workers.count == 1)
    }

    @Test(
        "a bad cluster file names the line, the field and what would be valid",
        arguments: [
            (validFile.replacingOccurrences(of: "[1, 3]", with: "[1, 7]"),
             "c.yaml:18:27: workers[0].experts[1]: expert 7 does not exist; the model's experts are 0...3"),
            (validFile.replacingOccurrences(of: "[1, 3]", with: "[5, 3]"),
             "c.yaml:18:24: workers[0].experts[1]: layer 5 does not exist; the model's layers are 0...1"),
            (validFile.replacingOccurrences(of: "name: w2", with: "name: w1"),
             "c.yaml:20:12: workers[2].name: two workers are named \"w1\" (line 19); worker names must be unique"),
            (validFile.replacingOccurrences(of: "http_port: 8600", with: "http_port: 5600"),
             "c.yaml:12:14: coordinator.http_port and coordinator.zmq_port are both 5600"),
            (validFile.replacingOccurrences(of: "zmq_port: 5600", with: "zmq_port: 70000"),
             "c.yaml:11:13: coordinator.zmq_port is \"70000\", but must be a whole number in 1...65535"),
            (validFile.replacingOccurrences(of: "threads: 3", with: "thread: 3"),
             "c.yaml:17:5: workers[0] has an unknown key \"thread\"; valid keys are name, host, threads, experts, options"),
            (validFile.replacingOccurrences(of: "{name: w1, host: ns2}", with: "{name: w1, host: ns2, experts: [[0, 0]]}"),
             "c.yaml:19:37: workers[1].experts[0]: layer 0 expert 0 is already on worker w0 (line 18); an expert is listed once"),
            (validFile.replacingOccurrences(of: "bind: 10.0.0.1", with: "bind: 0.0.0.0"),
             "coordinator.bind is 0.0.0.0, so coordinator.address must say how workers reach the coordinator"),
            (validFile.replacingOccurrences(of: "model: /srv/models/tiny\n", with: ""),
             "coordinator.host: host head has no model path; set model: at the top of the file or hosts.head.model"),
            (validFile.replacingOccurrences(of: "{ssh: admin@10.0.0.1}", with: "{ssh: a, command_prefix: []}"),
             "hosts.head has both ssh and command_prefix"),
            ("model: /m\ncoordinator: {host: a}\nworkers: []\n",
             "c.yaml:3:10: workers must be a non-empty list"),
            ("model: /m\ncoordinator: {host: a}\nworkers: [{name: \"w 0\", host: b}]\n",
             "a worker name may use only letters, digits"),
            ("model: [unclosed\n", "c.yaml: not valid YAML"),
        ])
    func invalid(text: String, message: String) {
        do {
            _ = try ClusterFile.parse(text, source: "c.yaml", model: shape)
            Issue.record("expected an error containing \(message)")
        } catch {
            #expect(error.description.contains(message), "\(error.description)")
        }
    }

    @Test("when every worker lists its experts, an expert nobody lists is an error naming it")
    func expertWithoutWorker() {
        let text = """
            model: /m
            coordinator: {host: a}
            workers:
              - {name: w0, host: b, experts: [[0, 0], [0, 1], [0, 2], [0, 3], [1, 0], [1, 1]]}
              - {name: w1, host: c, experts: [[1, 2]]}
            """
        do {
            _ = try ClusterFile.parse(text, source: "c.yaml", model: shape)
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("workers: layer 1 expert 3 has no worker"), "\(error.description)")
        }
    }

    @Test("the placement JSON names every worker in order; listed experts make a worker exclusive")
    func placementJSON() throws {
        let cluster = try ClusterFile.parse(validFile, source: "c.yaml", model: shape)
        #expect(cluster.placementJSON == """
            {"workers":[{"name":"w0","experts":[[0,0],[1,3]],"exclusive":true},{"name":"w1","experts":[]},{"name":"w2","experts":[]}]}
            """)
    }
}

@Suite("Launch plan")
struct LaunchPlanTests {
    static let keys = LaunchKeys(
        coordinator: .init(publicKey: "C-PUBLIC", secretKey: "C-SECRET"),
        workers: [
            "w0": .init(publicKey: "W0-PUBLIC", secretKey: "W0-SECRET"), "w1": .init(publicKey: "W1-PUBLIC", secretKey: "W1-SECRET"),
            "w2": .init(publicKey: "W2-PUBLIC", secretKey: "W2-SECRET"),
        ])

    @Test("workers get the coordinator's address, their model, name and threads; the coordinator gets the placement")
    func commands() throws {
        let cluster = try ClusterFile.parse(validFile, source: "c.yaml", model: shape)
        let plan = LaunchPlan(cluster: cluster, readyTimeoutSeconds: 60, keys: Self.keys)
        #expect(plan.workers[0].command == [
            "/opt/sy/switchyard", "worker", "--coordinator", "tcp://10.0.0.1:5600", "--model", "/other/tiny",
            "--name", "w0", "--threads", "3", "--exit-with-stdin", "--keys-from-stdin",
        ])
        #expect(plan.coordinator.command == [
            "/opt/sy/switchyard", "serve", "--model", "/srv/models/tiny", "--bind", "tcp://10.0.0.1:5600",
            "--workers", "3", "--placement-json", cluster.placementJSON, "--http", "10.0.0.1:8600", "--threads", "2",
            "--exit-with-stdin", "--keys-from-stdin",
        ])
        #expect(plan.healthURL == "http://10.0.0.1:8600")
    }

    @Test("each process gets its own secret key on standard input, never in its arguments; the coordinator allows every worker's public key")
    func keysOnStandardInput() throws {
        let cluster = try ClusterFile.parse(validFile, source: "c.yaml", model: shape)
        let plan = LaunchPlan(cluster: cluster, readyTimeoutSeconds: 60, keys: Self.keys)
        #expect(plan.workers[1].standardInputPrefix == "secret W1-SECRET\ncoordinator C-PUBLIC\n\n")
        #expect(plan.coordinator.standardInputPrefix == "secret C-SECRET\nallow w0 W0-PUBLIC\nallow w1 W1-PUBLIC\nallow w2 W2-PUBLIC\n\n")
        for command in plan.workers + [plan.coordinator] {
            #expect(!command.argv.contains { $0.contains("SECRET") }, "\(command.argv)")
        }
        let insecure = LaunchPlan(cluster: cluster, readyTimeoutSeconds: 60, keys: nil)
        #expect(insecure.workers[0].command.contains("--insecure"))
        #expect(insecure.coordinator.command.contains("--insecure"))
        #expect(insecure.coordinator.standardInputPrefix.isEmpty)
    }

    @Test("a command prefix runs the command as separate arguments; ssh gets it shell-quoted")
    func transports() throws {
        let cluster = try ClusterFile.parse(validFile, source: "c.yaml", model: shape)
        let plan = LaunchPlan(cluster: cluster, readyTimeoutSeconds: 60, keys: Self.keys)
        let prefixed = plan.workers[0].argv
        #expect(Array(prefixed.prefix(5)) == ["ip", "netns", "exec", "sy-h1", "sh"])
        #expect(prefixed.suffix(plan.workers[0].command.count) == ArraySlice(plan.workers[0].command))
        let ssh = plan.coordinator.argv
        #expect(Array(ssh.prefix(6)) == ["ssh", "-o", "BatchMode=yes", "admin@10.0.0.1", "--", "sh"])
        // The remote shell re-splits the words: the placement JSON must arrive as one argument.
        #expect(ssh.contains(shellQuoted(cluster.placementJSON)))
        #expect(plan.workers[0].killArgv(pid: 42) == ["ip", "netns", "exec", "sy-h1", "kill", "-KILL", "42"])
        #expect(plan.healthProbe == [
            "ssh", "-o", "BatchMode=yes", "admin@10.0.0.1", "--", "/opt/sy/switchyard", "health", "--server",
            "http://10.0.0.1:8600", "--wait", "60",
        ])
    }

    @Test("through ssh, the remote shell gets back the exact arguments and the pid line")
    func sshRoundTrip() throws {
        let host = HostSpec(name: "h", transport: .ssh(destination: "h", options: []), model: "/m", switchyard: "sy")
        // The command prints its arguments and its own pid: the pid the wrapper announced must be it.
        let command = LaunchCommand(
            label: "w0", host: host,
            command: ["sh", "-c", "printf '[%s]' \"$@\"; echo; echo $$", "sh", "a b", "{\"x\":[1,2]}", "it's", "$HOME"])
        let argv = command.argv
        let separator = try #require(argv.firstIndex(of: "--"))
        // What sshd does with the words after `--`: join them with spaces and hand them to a shell.
        let remoteLine = argv[(separator + 1)...].joined(separator: " ")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", remoteLine]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let printed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let announced = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let lines = printed.split(separator: "\n").map(String.init)
        #expect(lines.first == "[a b][{\"x\":[1,2]}][it's][$HOME]")
        #expect(LaunchCommand.announcedPID(in: announced.trimmingCharacters(in: .newlines)) == lines.last.flatMap { Int32($0) })
    }

    @Test("the launcher reads the pid a started process announces, and nothing else")
    func announcedPID() {
        #expect(LaunchCommand.announcedPID(in: "switchyard-launch: pid 1234") == 1234)
        #expect(LaunchCommand.announcedPID(in: "info: switchyard-launch: pid 1234") == nil)
        #expect(LaunchCommand.announcedPID(in: "switchyard-launch: pid x") == nil)
    }

    @Test("shell quoting round-trips through sh", arguments: ["plain", "with space", "it's", "{\"a\":[1,2]}", "", "$HOME;`x`"])
    func quoting(word: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "printf %s \(shellQuoted(word))"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(String(decoding: data, as: UTF8.self) == word)
    }
}
