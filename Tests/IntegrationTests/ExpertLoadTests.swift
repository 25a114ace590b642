import Foundation
import TestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// GET of a URL, bounded in time; returns the status and body.
func httpGet(_ url: String, timeout: TimeInterval = 60) throws -> (status: Int, body: Data) {
    final class Box: @unchecked Sendable {
        // @unchecked: written once by the URLSession callback before `done` is signalled, read after.
        var result: Result<(Int, Data), any Error> = .failure(TestProcessError(description: "no answer"))
    }
    let box = Box()
    let done = DispatchSemaphore(value: 0)
    var request = URLRequest(url: URL(string: url)!)
    request.timeoutInterval = timeout
    let task = URLSession.shared.dataTask(with: request) { data, response, error in
        if let error {
            box.result = .failure(error)
        } else {
            box.result = .success(((response as? HTTPURLResponse)?.statusCode ?? 0, data ?? Data()))
        }
        done.signal()
    }
    task.resume()
    guard done.wait(timeout: .now() + timeout + 5) == .success else {
        task.cancel()
        throw TestProcessError(description: "GET \(url) did not finish")
    }
    let (status, body) = try box.result.get()
    return (status, body)
}

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

        let cluster = try ServedCluster(model: model, workers: 2)
        let base = try cluster.httpBase()
        try cluster.startWorker(model: model, name: "w0")
        try cluster.startWorker(model: model, name: "w1")
        try cluster.waitUntilServing()

        // Nothing routed yet.
        let empty = try httpGet(base + "/v1/expert_load")
        #expect(empty.status == 200)
        let emptyJSON = try #require(try JSONSerialization.jsonObject(with: empty.body) as? [String: Any])
        #expect((emptyJSON["tokens_per_expert"] as? [[Int]])?.flatMap { $0 }.allSatisfy { $0 == 0 } == true)

        // All prompts at once, so steps batch several sequences: a request's routing does not
        // depend on what else is in the batch.
        let clients = cases.map { reference in
            SwitchyardProcess([
                "generate", "--server", base, "--prompt", reference.prompt, "--max-tokens",
                "\(reference.completionTokenIDs.count)", "--temperature", "0", "--ignore-eos",
            ])
        }
        for client in clients { try client.start() }
        for client in clients {
            let output = try client.wait(timeout: .seconds(300))
            #expect(output.status == 0, "\(output.stderr)")
        }

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
