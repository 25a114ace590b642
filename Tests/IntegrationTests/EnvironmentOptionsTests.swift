import Foundation
import TestSupport
import Testing

/// `serve` and `worker` configured by SWITCHYARD_* environment variables, as a systemd unit or a
/// container does it, with the command line winning over them.
@Suite("SWITCHYARD_* environment options", .serialized)
struct EnvironmentOptionsTests {
    @Test("serve starts from the environment alone: SWITCHYARD_MODEL, SWITCHYARD_WORKERS, SWITCHYARD_HTTP, SWITCHYARD_SERVED_MODEL_NAME")
    func serveFromEnvironment() throws {
        let root = try TestPaths.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let snapshot = try OperatorCommandLineTests.makeCache(root: root)
        let server = SwitchyardProcess(
            ["serve"],
            environment: [
                "SWITCHYARD_MODEL": snapshot.path, "SWITCHYARD_WORKERS": "0", "SWITCHYARD_HTTP": "127.0.0.1:0",
                "SWITCHYARD_SERVED_MODEL_NAME": "from-env", "SWITCHYARD_LOG_LEVEL": "debug",
            ])
        try server.start()
        defer { server.kill() }
        let log = try server.waitForStderr { $0.contains("HTTP API listening on ") }
        guard let range = log.range(of: #"http://127\.0\.0\.1:[0-9]+"#, options: .regularExpression) else {
            throw TestProcessError(description: "no HTTP address in serve's log:\n\(log)")
        }
        let (status, body) = try httpGet(String(log[range]) + "/v1/models")
        #expect(status == 200)
        #expect(String(decoding: body, as: UTF8.self).contains("\"from-env\""))
    }

    @Test("the command line wins: an explicit option over its variable, `serve MODEL` over SWITCHYARD_MODEL")
    func commandLineWins() throws {
        let root = try TestPaths.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let snapshot = try OperatorCommandLineTests.makeCache(root: root)
        let server = SwitchyardProcess(
            ["serve", snapshot.path, "--http", "127.0.0.1:0", "--workers=0"],
            environment: [
                "SWITCHYARD_MODEL": root.appendingPathComponent("missing").path, "SWITCHYARD_HTTP": "not an address",
                "SWITCHYARD_WORKERS": "3",
            ])
        try server.start()
        defer { server.kill() }
        _ = try server.waitForStderr { $0.contains("HTTP API listening on http://127.0.0.1:") }
    }

    @Test("a variable's value is checked as its option's would be, and the error names the option")
    func refusedValues() throws {
        let badRunning = try runSwitchyard(["serve", "/nonexistent"], environment: ["SWITCHYARD_MAX_RUNNING": "0"])
        #expect(badRunning.status != 0)
        #expect(badRunning.stderr.contains("--max-running is 0, but must be at least 1"), "\(badRunning.stderr)")
        let badCoordinator = try runSwitchyard(
            ["worker", "--model", "/nonexistent"], environment: ["SWITCHYARD_COORDINATOR": "localhost:5555"])
        #expect(badCoordinator.status != 0)
        #expect(badCoordinator.stderr.contains("--coordinator is \"localhost:5555\""), "\(badCoordinator.stderr)")
        let badFlag = try runSwitchyard(["serve", "/nonexistent"], environment: ["SWITCHYARD_INSECURE": "yes please"])
        #expect(badFlag.status != 0)
        #expect(badFlag.stderr.contains("SWITCHYARD_INSECURE is \"yes please\", but a flag's variable must be 1, true, 0 or false"),
                "\(badFlag.stderr)")
    }

    @Test("a flag's variable sets it with 1 or true and leaves it unset with 0 or false", arguments: ["1", "true", "0", "false"])
    func flagValues(value: String) throws {
        // --insecure beside --key is refused; without --insecure the key alone is accepted by validation
        // and fails later, on reading the (missing) model.
        let output = try runSwitchyard(
            ["serve", "/nonexistent", "--workers", "1", "--allow-keys", "/nonexistent-allow"],
            environment: ["SWITCHYARD_INSECURE": value, "SWITCHYARD_KEY": "/nonexistent-key"])
        #expect(output.status != 0)
        let refusedBoth = output.stderr.contains("give --insecure, or --key and --allow-keys, not both")
        #expect(refusedBoth == (value == "1" || value == "true"), "\(output.stderr)")
    }

    @Test("serve --help and worker --help explain the variables")
    func documented() throws {
        for command in ["serve", "worker"] {
            let help = try runSwitchyard([command, "--help"])
            #expect(help.status == 0)
            let flat = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            #expect(flat.contains("SWITCHYARD_ and the option's long name upper-cased with - as _"), "\(command): \(flat)")
        }
    }
}
