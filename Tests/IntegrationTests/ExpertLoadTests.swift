import Foundation
import TestSupport
import Testing

@Suite("expert load: /v1/expert_load and switchyard balance equal transformers' routing", .serialized)
struct ExpertLoadIntegrationTests {
    /// The sum over a fixture's reference cases of transformers' per-layer per-expert routing
    /// counts (prompt tokens + the tokens fed back in decode steps).
    static func transformersCounts(_ cases: [ReferenceCase]) -> [[Int]] {
        var total: [[Int]] = []
        for reference in cases {
            for load in [reference.prefillLoad, reference.decodeLoad] {
                if total.isEmpty { total = load.map { $0.map { _ in 0 } } }
                for (layer, counts) in load.enumerated() {
                    for (expert, count) in counts.enumerated() { total[layer][expert] += count }
                }
            }
        }
        return total
    }

    @Test("serve with 2 workers: after the reference prompts, sent at once, tokens_per_expert equals the transformers counts",
          arguments: ["top2", "top1", "gpt_oss_clamp", "minimax_m2_basic", "deepseek_v2_greedy", "deepseek_v3_mla", "glm4_moe_groups"])
    func countsEqualTransformers(fixture: String) throws {
        let model = TestPaths.fixtures.appendingPathComponent("models/\(fixture)")
        let cases = ReferenceCase.all().filter { $0.model.lastPathComponent == fixture }
        try #require(!cases.isEmpty, "no reference cases for \(fixture)")
        let expected = Self.transformersCounts(cases)

        // Liveness limits far above how long the test stops the workers (below): neither side
        // takes the other for lost meanwhile.
        let cluster = try ServedCluster(
            model: model, workers: 2, extraArguments: ["--heartbeat-misses", "100000", "--dispatch-timeout", "600"])
        let base = try cluster.httpBase()
        for name in ["w0", "w1"] {
            try cluster.startWorker(
                model: model, name: name, keyArguments: cluster.keyArguments("worker") + ["--heartbeat-interval", "60"])
        }
        try cluster.waitUntilServing()

        // Nothing routed yet.
        let empty = try httpGet(base + "/v1/expert_load")
        #expect(empty.status == 200)
        let emptyJSON = try #require(try JSONSerialization.jsonObject(with: empty.body) as? [String: Any])
        #expect((emptyJSON["tokens_per_expert"] as? [[Int]])?.flatMap { $0 }.allSatisfy { $0 == 0 } == true)

        // All prompts at once, so steps batch several sequences: a request's routing does not
        // depend on what else is in the batch. Held so that they really share steps: with both
        // workers stopped, the first request's first step waits at its first MoE layer while the
        // others queue; once the server holds them all, the workers go on and the next step runs
        // every request still going (each asks for 8 tokens or more, so the first one too).
        let stepsBefore = try Self.stepsWithSeveralRequests(base)
        for worker in cluster.workers { kill(worker.processIdentifier, SIGSTOP) }
        var stopped = true
        defer { if stopped { for worker in cluster.workers { kill(worker.processIdentifier, SIGCONT) } } }
        let clients = cases.map { reference in
            SwitchyardProcess([
                "generate", "--server", base, "--prompt", reference.prompt, "--max-tokens",
                "\(reference.completionTokenIDs.count)", "--temperature", "0", "--ignore-eos",
            ])
        }
        for client in clients { try client.start() }
        let deadline = ContinuousClock.now + .seconds(300)
        var held = 0
        while ContinuousClock.now < deadline {
            let samples = try Self.metrics(base)
            held = Int((samples["switchyard_requests_running"] ?? 0) + (samples["switchyard_requests_waiting"] ?? 0))
            if held == clients.count { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        #expect(held == clients.count, "the server never held all \(clients.count) requests at once")
        for worker in cluster.workers { kill(worker.processIdentifier, SIGCONT) }
        stopped = false
        for client in clients {
            let output = try client.wait(timeout: .seconds(300))
            #expect(output.status == 0, "\(output.stderr)")
        }
        #expect(try Self.stepsWithSeveralRequests(base) > stepsBefore, "the requests never shared a step")

        let answer = try httpGet(base + "/v1/expert_load")
        #expect(answer.status == 200)
        let json = try #require(try JSONSerialization.jsonObject(with: answer.body) as? [String: Any])
        #expect(json["tokens_per_expert"] as? [[Int]] == expected)
        let balancedness = try #require(json["balancedness"] as? [Double])
        // One balancedness per MoE layer: a dense layer (an empty row) has none.
        let moeRows = expected.filter { !$0.isEmpty }
        #expect(balancedness.count == moeRows.count)
        for (counts, found) in zip(moeRows, balancedness) {
            let mean = Double(counts.reduce(0, +)) / Double(counts.count)
            #expect(abs(found - mean / Double(counts.max()!)) < 1e-12)
        }
        // Every worker computed rows, and its rows add up to the routed (token, expert) pairs.
        let workers = try #require(json["workers"] as? [[String: Any]])
        #expect(workers.compactMap { $0["name"] as? String }.sorted() == ["w0", "w1"])
        let expertRows = workers.compactMap { ($0["total"] as? [String: Any])?["expert_rows"] as? Int }
        let routedPairs: Int = expected.reduce(0) { $0 + $1.reduce(0, +) }
        let computedPairs: Int = expertRows.reduce(0, +)
        #expect(computedPairs == routedPairs)
        #expect(expertRows.allSatisfy { $0 > 0 })
        // Each DISPATCH carries its rows' hidden states and each COMBINE as many rows back, as f32.
        let configuration = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: model.appendingPathComponent("config.json"))) as? [String: Any])
        let hiddenSize = try #require(configuration["hidden_size"] as? Int)
        for worker in workers {
            let total = try #require(worker["total"] as? [String: Any])
            let rows = try #require(total["rows"] as? Int)
            let tensorBytes = rows * hiddenSize * 4
            let sent = try #require(total["bytes_sent"] as? Int)
            let received = try #require(total["bytes_received"] as? Int)
            #expect(sent > tensorBytes && received > tensorBytes, "\(worker)")
            #expect((total["round_trip_us"] as? Int ?? 0) > 0, "\(worker)")
        }

        let balance = try runSwitchyard(["balance", "--server", base, "--json"])
        #expect(balance.status == 0, "\(balance.stderr)")
        let balanceJSON = try #require(try JSONSerialization.jsonObject(with: Data(balance.stdout.utf8)) as? [String: Any])
        #expect(balanceJSON["tokens_per_expert"] as? [[Int]] == expected)

        let directory = try TestPaths.makeTemporaryDirectory("switchyard-balance")
        defer { try? FileManager.default.removeItem(at: directory) }
        let svg = directory.appendingPathComponent("load.svg")
        let table = try runSwitchyard(["balance", "--server", base, "--svg", svg.path])
        #expect(table.status == 0, "\(table.stderr)")
        #expect(table.stdout.contains("Hottest experts"))
        #expect(table.stdout.contains("Per layer"))
        let svgText = try String(contentsOf: svg, encoding: .utf8)
        #expect(svgText.hasPrefix("<?xml"))
        let firstMoELayer = try #require(expected.firstIndex { !$0.isEmpty })
        #expect(svgText.contains("id=\"expert-\(firstMoELayer)-0\""))
    }

    /// /metrics' samples without labels, and histogram buckets as `NAME_bucket{le="BOUND"}` with the
    /// bound as Prometheus writes it.
    static func metrics(_ base: String) throws -> [String: Double] {
        let answer = try httpGet(base + "/metrics")
        guard answer.status == 200 else { throw TestProcessError(description: "GET /metrics answered \(answer.status)") }
        var samples: [String: Double] = [:]
        for line in String(decoding: answer.body, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    /// Engine steps so far that ran more than one request (the switchyard_step_requests histogram:
    /// all steps less those in its first bucket, one request).
    static func stepsWithSeveralRequests(_ base: String) throws -> Double {
        let samples = try metrics(base)
        guard let count = samples["switchyard_step_requests_count"],
            let alone = samples["switchyard_step_requests_bucket{le=\"1\"}"] ?? samples["switchyard_step_requests_bucket{le=\"1.0\"}"]
        else { throw TestProcessError(description: "/metrics has no switchyard_step_requests histogram") }
        return count - alone
    }

    @Test("balance names the server it cannot reach and exits non-zero")
    func unreachable() throws {
        // Port 9 (discard): nothing listens there on a test machine.
        let output = try runSwitchyard(["balance", "--server", "http://127.0.0.1:9"])
        #expect(output.status != 0)
        #expect(output.stderr.contains("cannot reach http://127.0.0.1:9"), "\(output.stderr)")
        let bad = try runSwitchyard(["balance", "--server", "http://127.0.0.1:9", "--window", "soon"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("window is \"soon\""), "\(bad.stderr)")
    }
}

extension ServedCluster {
    /// The HTTP API's base URL, from serve's log.
    func httpBase() throws -> String {
        let log = try serve.waitForStderr { $0.contains("HTTP API listening on ") }
        guard let range = log.range(of: #"http://127\.0\.0\.1:[0-9]+"#, options: .regularExpression) else {
            throw TestProcessError(description: "no HTTP address in serve's log:\n\(log)")
        }
        return String(log[range])
    }
}
