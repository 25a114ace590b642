import Foundation
import TestSupport
import Testing

/// What `serve` logs per request and while busy.
@Suite("serve access log and throughput line", .serialized)
struct AccessLogIntegrationTests {
    @Test("one access line per request (method, route, status, tokens, duration; no prompt text) and a throughput line")
    func accessAndThroughput() throws {
        let root = try TestPaths.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let snapshot = try OperatorCommandLineTests.makeCache(root: root)
        let server = SwitchyardProcess(
            ["serve", snapshot.path, "--workers", "0", "--http", "127.0.0.1:0", "--stats-interval", "0.5"])
        try server.start()
        defer { server.kill() }
        let log = try server.waitForStderr { $0.contains("HTTP API listening on ") }
        guard let range = log.range(of: #"http://127\.0\.0\.1:[0-9]+"#, options: .regularExpression) else {
            throw TestProcessError(description: "no HTTP address in serve's log:\n\(log)")
        }
        let base = String(log[range])
        let secret = "zebra quartz prompt"
        let (status, _) = try httpPost(
            base + "/v1/completions",
            json: #"{"prompt": "\#(secret)", "max_tokens": 4, "temperature": 0, "ignore_eos": true}"#)
        #expect(status == 200)
        let (missing, _) = try httpGet(base + "/v1/nowhere")
        #expect(missing == 404)

        let access = try server.waitForStderr {
            $0.range(of: #"POST /v1/completions 200 [0-9.]+ s prompt_tokens=[0-9]+ completion_tokens=4"#, options: .regularExpression) != nil
                && $0.contains("GET /v1/nowhere 404 ")
        }
        #expect(!access.contains(secret))
        let throughput = try server.waitForStderr {
            $0.range(of: #"Avg prompt throughput: [0-9.]+ tokens/s, Avg generation throughput: [0-9.]+ tokens/s, Running: [0-9]+ reqs, Waiting: [0-9]+ reqs"#,
                     options: .regularExpression) != nil
        }
        #expect(!throughput.contains(secret))
    }

    /// Starts `serve` on the make-model checkpoint under `root` with `extra` options; returns it and its base URL.
    static func startServer(root: URL, _ extra: [String]) throws -> (SwitchyardProcess, String) {
        let snapshot = try OperatorCommandLineTests.makeCache(root: root)
        let server = SwitchyardProcess(["serve", snapshot.path, "--workers", "0", "--http", "127.0.0.1:0"] + extra)
        try server.start()
        let log = try server.waitForStderr { $0.contains("HTTP API listening on ") }
        guard let range = log.range(of: #"http://127\.0\.0\.1:[0-9]+"#, options: .regularExpression) else {
            server.kill()
            throw TestProcessError(description: "no HTTP address in serve's log:\n\(log)")
        }
        return (server, String(log[range]))
    }

    @Test("--log-format json: every log line is one JSON object with timestamp, level, label and message")
    func jsonLines() throws {
        let root = try TestPaths.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let (server, base) = try Self.startServer(root: root, ["--log-format", "json"])
        defer { server.kill() }
        let (status, _) = try httpGet(base + "/v1/models")
        #expect(status == 200)
        let log = try server.waitForStderr { $0.contains("GET /v1/models 200") }
        let lines = log.split(separator: "\n")
        #expect(lines.count >= 2)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["level"] as? String != nil, "\(line)")
            #expect(object?["label"] as? String != nil, "\(line)")
            #expect(object?["message"] as? String != nil, "\(line)")
            let timestamp = object?["timestamp"] as? String ?? ""
            #expect(timestamp.range(of: #"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$"#, options: .regularExpression) != nil, "\(line)")
        }
        #expect(lines.contains { $0.contains(#""message":"GET /v1/models 200 "#) && $0.contains(#""level":"info""#) })
    }

    @Test("--max-model-len caps prompt + completion with vLLM's 400, shows in /v1/models, and cannot exceed the model's")
    func maxModelLength() throws {
        let root = try TestPaths.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let (server, base) = try Self.startServer(root: root, ["--max-model-len", "24"])
        defer { server.kill() }
        let (modelsStatus, models) = try httpGet(base + "/v1/models")
        #expect(modelsStatus == 200)
        #expect(String(decoding: models, as: UTF8.self).contains(#""max_model_len":24"#))

        let (refused, body) = try httpPost(
            base + "/v1/completions", json: #"{"prompt": [1, 2, 3, 4], "max_tokens": 21, "temperature": 0}"#)
        #expect(refused == 400)
        let message = String(decoding: body, as: UTF8.self)
        #expect(message.contains("This model's maximum context length is 24 tokens. However, you requested 25 tokens (4 in the prompt, 21 in the completion)."), "\(message)")
        let (accepted, _) = try httpPost(
            base + "/v1/completions", json: #"{"prompt": [1, 2, 3, 4], "max_tokens": 20, "temperature": 0, "ignore_eos": true}"#)
        #expect(accepted == 200)

        let snapshot = try OperatorCommandLineTests.makeCache(root: root.appendingPathComponent("other"))
        let tooLong = try runSwitchyard(["serve", snapshot.path, "--workers", "0", "--http", "127.0.0.1:0", "--max-model-len", "5000"])
        #expect(tooLong.status != 0)
        #expect(tooLong.stderr.contains("--max-model-len is 5000, but the model's max_position_embeddings is 4096"), "\(tooLong.stderr)")
    }
}
