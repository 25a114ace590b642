// /health, /metrics, /v1/models, /version, the API key, and unknown routes.
import Coordinator
import Foundation
import Hummingbird
import HummingbirdTesting
import Server
import Testing

@Suite("Operations routes")
struct OperationsTests {
    @Test("/health answers 503 with the reason until the engine is ready, then 200 ok")
    func health() async throws {
        let service = FakeGenerationService()
        service.setHealth(.notReady(reason: "waiting for worker w1"))
        try await makeTestApplication(service).test(.router) { client in
            let notReady = try await client.get("/health")
            #expect(notReady.status == .serviceUnavailable)
            #expect(try notReady.json()["reason"] as? String == "waiting for worker w1")

            service.setHealth(.ready)
            let ready = try await client.get("/health")
            #expect(ready.status == .ok)
            #expect(try ready.json()["status"] as? String == "ok")
        }
    }

    @Test("/v1/models lists the served model")
    func models() async throws {
        try await makeTestApplication(FakeGenerationService()).test(.router) { client in
            let response = try await client.get("/v1/models")
            #expect(response.status == .ok)
            let json = try response.json()
            #expect(json["object"] as? String == "list")
            let data = try #require(json["data"] as? [[String: Any]])
            #expect(data.map { $0["id"] as? String } == ["fake-moe"])
            #expect(data.first?["object"] as? String == "model")
        }
    }

    @Test("an unknown route answers 404 in the error envelope")
    func unknownRoute() async throws {
        try await makeTestApplication(FakeGenerationService()).test(.router) { client in
            let response = try await client.get("/v1/engines")
            #expect(response.status == .notFound)
            let error = try response.errorObject()
            #expect((error["message"] as? String)?.contains("/v1/engines") == true)
        }
    }

    @Test("with an API key, /v1 routes need the bearer token and /health and /metrics stay open")
    func apiKey() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service, apiKey: "s3cret").test(.router) { client in
            let body = #"{"prompt": "x", "max_tokens": 1}"#
            let missing = try await client.post("/v1/completions", body)
            #expect(missing.status == .unauthorized)
            #expect(try missing.errorObject()["type"] as? String == "authentication_error")
            let wrong = try await client.post("/v1/completions", body, headers: [.authorization: "Bearer nope"])
            #expect(wrong.status == .unauthorized)
            let status1 = try await client.get("/v1/models").status
            #expect(status1 == .unauthorized)

            let right = try await client.post("/v1/completions", body, headers: [.authorization: "Bearer s3cret"])
            #expect(right.status == .ok)
            let status2 = try await client.get("/v1/models", headers: [.authorization: "Bearer s3cret"]).status
            #expect(status2 == .ok)
            let status3 = try await client.get("/health").status
            #expect(status3 == .ok)
            let status4 = try await client.get("/metrics").status
            #expect(status4 == .ok)
        }
        #expect(service.submitted.count == 1)
    }

    @Test("/metrics exposes every family with HELP and TYPE, and histograms with cumulative buckets")
    func metrics() async throws {
        let service = FakeGenerationService()
        var metrics = EngineMetrics()
        metrics.runningRequests = 2
        metrics.waitingRequests = 3
        metrics.kvCacheUsage = 0.25
        metrics.promptTokensTotal = 120
        metrics.generationTokensTotal = 45
        metrics.finishedRequests = ["stop": 4, "length": 1]
        metrics.expertTokens = [[5, 0, 7, 9], [1, 2, 3, 4]]
        for value in [0.0005, 0.003, 0.003, 0.2, 7, 100] { metrics.requestLatency.observe(value) }
        metrics.timeToFirstToken.observe(0.02)
        metrics.interTokenLatency.observe(0.004)
        metrics.queueTime.observe(0.0001)
        service.setMetrics(metrics)

        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.get("/metrics")
            #expect(response.status == .ok)
            #expect(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
            let exposition = try Exposition(response.text)

            let histograms = [
                "switchyard_request_latency_seconds", "switchyard_time_to_first_token_seconds",
                "switchyard_inter_token_latency_seconds", "switchyard_request_queue_time_seconds",
            ]
            for name in histograms { #expect(exposition.types[name] == "histogram", "\(name)") }
            for name in [
                "switchyard_requests_running", "switchyard_requests_waiting", "switchyard_kv_cache_usage_ratio",
            ] {
                #expect(exposition.types[name] == "gauge", "\(name)")
            }
            for name in [
                "switchyard_prompt_tokens_total", "switchyard_generation_tokens_total",
                "switchyard_requests_finished_total", "switchyard_expert_tokens_total",
            ] {
                #expect(exposition.types[name] == "counter", "\(name)")
            }
            #expect(Set(exposition.helps) == Set(exposition.types.keys), "every family has a HELP line")

            // Latency: 0.0005 ≤ 0.001; 0.003 ×2 ≤ 0.005; 0.2 ≤ 0.25; 7 ≤ 10; 100 only in +Inf.
            let latency = exposition.buckets("switchyard_request_latency_seconds")
            #expect(latency.map(\.bound) == Histogram.latencyBuckets.map { "\($0)" } + ["+Inf"])
            #expect(zip(latency, latency.dropFirst()).allSatisfy { $0.count <= $1.count }, "buckets are cumulative")
            let counts = Dictionary(uniqueKeysWithValues: latency.map { ($0.bound, $0.count) })
            #expect(counts["0.001"] == 1 && counts["0.0025"] == 1 && counts["0.005"] == 3)
            #expect(counts["0.25"] == 4 && counts["10.0"] == 5 && counts["60.0"] == 5 && counts["+Inf"] == 6)
            #expect(exposition.value("switchyard_request_latency_seconds_count") == 6)
            let sum = try #require(exposition.value("switchyard_request_latency_seconds_sum"))
            #expect(abs(sum - 107.2065) < 1e-9)
            for name in histograms.dropFirst() {
                #expect(exposition.buckets(name).last?.count == 1)
                #expect(exposition.value(name + "_count") == 1)
            }

            #expect(exposition.value("switchyard_requests_running") == 2)
            #expect(exposition.value("switchyard_requests_waiting") == 3)
            #expect(exposition.value("switchyard_kv_cache_usage_ratio") == 0.25)
            #expect(exposition.value("switchyard_prompt_tokens_total") == 120)
            #expect(exposition.value("switchyard_generation_tokens_total") == 45)
            #expect(exposition.value(#"switchyard_requests_finished_total{reason="stop"}"#) == 4)
            #expect(exposition.value(#"switchyard_requests_finished_total{reason="length"}"#) == 1)
            #expect(exposition.value(#"switchyard_expert_tokens_total{layer="0",expert="3"}"#) == 9)
            #expect(exposition.value(#"switchyard_expert_tokens_total{layer="1",expert="2"}"#) == 3)
        }
    }
}

/// A parsed Prometheus text exposition: TYPE and HELP lines, and samples by series.
struct Exposition {
    var types: [String: String] = [:]
    var helps: [String] = []
    /// Series (name with labels) → value, in order.
    var samples: [(series: String, value: Double)] = []

    init(_ text: String) throws {
        #expect(text.hasSuffix("\n"))
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ", maxSplits: 3)
            if line.hasPrefix("# TYPE ") {
                types[String(words[2])] = String(words[3])
            } else if line.hasPrefix("# HELP ") {
                helps.append(String(words[2]))
            } else {
                let parts = line.split(separator: " ")
                try #require(parts.count == 2, "a sample line is 'series value': \(line)")
                let value = try #require(Double(parts[1]), "bad value in \(line)")
                samples.append((String(parts[0]), value))
                let name = String(parts[0].prefix { $0 != "{" })
                let family = ["_bucket", "_sum", "_count"].reduce(name) {
                    types[$0] == nil && $0.hasSuffix($1) ? String($0.dropLast($1.count)) : $0
                }
                #expect(types[family] != nil, "\(name) follows a TYPE line")
            }
        }
    }

    func value(_ series: String) -> Double? {
        samples.first { $0.series == series }?.value
    }

    /// `(le, cumulative count)` of a histogram's buckets, in order.
    func buckets(_ name: String) -> [(bound: String, count: Double)] {
        let prefix = name + "_bucket{le=\""
        return samples.filter { $0.series.hasPrefix(prefix) }.map {
            (String($0.series.dropFirst(prefix.count).dropLast(2)), $0.value)
        }
    }
}

@Suite("The /version route")
struct VersionRouteTests {
    @Test("/version answers vLLM's {\"version\": ...} with switchyard --version's number, without a key")
    func version() async throws {
        try await makeTestApplication(FakeGenerationService(), apiKey: "k").test(.router) { client in
            let response = try await client.get("/version")
            #expect(response.status == .ok)
            let json = try response.json()
            #expect(json.keys.sorted() == ["version"])
            #expect(json["version"] as? String == switchyardVersion)
            #expect((json["version"] as? String)?.split(separator: ".").count == 3)
        }
    }
}
