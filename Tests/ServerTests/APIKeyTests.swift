// Several named API keys, and what /health tells a caller without one.
import Coordinator
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Server
import Testing

@Suite("API keys and /health")
struct APIKeyTests {
    static func application(_ service: FakeGenerationService, keys: [APIKey]) -> some ApplicationProtocol {
        var logger = Logger(label: "api-key-tests")
        logger.logLevel = .critical
        var configuration = ServerConfiguration(host: "127.0.0.1", port: 0)
        configuration.apiKeys = keys
        return makeApplication(service: service, configuration: configuration, logger: logger)
    }

    @Test("each of several named keys opens /v1; any other key, or a prefix of one, does not")
    func severalKeys() async throws {
        let service = FakeGenerationService()
        let keys = [APIKey(name: "alice", key: "key-of-alice"), APIKey(name: "bob", key: "key-of-bob")]
        try await Self.application(service, keys: keys).test(.router) { client in
            for key in ["key-of-alice", "key-of-bob"] {
                let status = try await client.get("/v1/models", headers: [.authorization: "Bearer \(key)"]).status
                #expect(status == .ok, "\(key)")
            }
            for key in ["key-of-carol", "key-of-ali", "key-of-bob2", ""] {
                let status = try await client.get("/v1/models", headers: [.authorization: "Bearer \(key)"]).status
                #expect(status == .unauthorized, "\(key)")
            }
        }
    }

    @Test("with keys set, /health tells a caller without a valid key only its status; with one, also the reason")
    func healthWithoutKey() async throws {
        let service = FakeGenerationService()
        service.setHealth(.notReady(reason: "1 of 2 workers are ready; start workers with: switchyard worker --coordinator tcp://10.0.0.1:5555 --model /srv/models/secret"))
        try await Self.application(service, keys: [APIKey(name: "ops", key: "k")]).test(.router) { client in
            for headers: HTTPFields in [[:], [.authorization: "Bearer wrong"]] {
                let anonymous = try await client.get("/health", headers: headers)
                #expect(anonymous.status == .serviceUnavailable)
                #expect(try anonymous.json()["status"] as? String == "unavailable")
                #expect(try anonymous.json()["reason"] == nil)
                #expect(!anonymous.text.contains("tcp://"))
                #expect(!anonymous.text.contains("/srv/models"))
            }
            let operator_ = try await client.get("/health", headers: [.authorization: "Bearer k"])
            #expect(operator_.status == .serviceUnavailable)
            #expect((try operator_.json()["reason"] as? String)?.contains("tcp://10.0.0.1:5555") == true)

            service.setHealth(.degraded("worker w1 (tcp://10.0.0.2) lost"))
            let degraded = try await client.get("/health")
            #expect(degraded.status == .ok)
            #expect(try degraded.json()["status"] as? String == "degraded")
            #expect(!degraded.text.contains("tcp://"))
        }
    }

    @Test("/metrics counts /v1 requests by key name and refusals by reason, and shows no key bytes")
    func requestsPerKeyName() async throws {
        let service = FakeGenerationService()
        let keys = [APIKey(name: "alice", key: "sk-alice-7f3a9c"), APIKey(name: "bob", key: "sk-bob-41d2e8"),
                    APIKey(name: "idle", key: "sk-idle-000111")]
        try await Self.application(service, keys: keys).test(.router) { client in
            for _ in 0..<3 {
                #expect(try await client.get("/v1/models", headers: [.authorization: "Bearer sk-alice-7f3a9c"]).status == .ok)
            }
            #expect(try await client.get("/v1/models", headers: [.authorization: "Bearer sk-bob-41d2e8"]).status == .ok)
            #expect(try await client.get("/v1/models").status == .unauthorized)
            for _ in 0..<2 {
                let offered = "sk-guess-5e5e5e"
                #expect(try await client.get("/v1/models", headers: [.authorization: "Bearer \(offered)"]).status == .unauthorized)
            }
            let metrics = try await client.get("/metrics").text
            let lines = Set(metrics.split(separator: "\n").map(String.init))
            #expect(lines.contains("switchyard_api_key_requests_total{key=\"alice\"} 3"))
            #expect(lines.contains("switchyard_api_key_requests_total{key=\"bob\"} 1"))
            #expect(lines.contains("switchyard_api_key_requests_total{key=\"idle\"} 0"))
            #expect(lines.contains("switchyard_api_requests_refused_total{reason=\"missing_key\"} 1"))
            #expect(lines.contains("switchyard_api_requests_refused_total{reason=\"invalid_key\"} 2"))
            for secret in ["sk-alice-7f3a9c", "sk-bob-41d2e8", "sk-idle-000111", "sk-guess-5e5e5e", "7f3a9c", "5e5e5e"] {
                #expect(!metrics.contains(secret), "\(secret)")
            }
        }
    }

    @Test("without keys, /metrics has no per-key series")
    func noKeysNoSeries() async throws {
        try await Self.application(FakeGenerationService(), keys: []).test(.router) { client in
            #expect(try await client.get("/v1/models").status == .ok)
            let metrics = try await client.get("/metrics").text
            #expect(metrics.contains("switchyard_prompt_tokens_total"))
            #expect(!metrics.contains("switchyard_api_key_requests_total"))
        }
    }
}
