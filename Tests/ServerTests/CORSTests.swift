// --allowed-origins: browsers on the allowed origins get CORS headers (preflights answered without
// the API key); other origins get none.
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Server
import Testing

@Suite("CORS: --allowed-origins")
struct CORSTests {
    private func application(_ origins: String?, apiKey: String? = nil) throws -> some ApplicationProtocol {
        var logger = Logger(label: "cors-tests")
        logger.logLevel = .critical
        var configuration = ServerConfiguration(host: "127.0.0.1", port: 0, apiKey: apiKey)
        configuration.allowedOrigins = try origins.map(AllowedOrigins.init(parsing:))
        return makeApplication(service: FakeGenerationService(), configuration: configuration, logger: logger)
    }

    @Test("an allowed origin's preflight and request get its origin back; another origin gets no CORS header")
    func allowedOrigin() async throws {
        try await application(#"["http://localhost:3000", "http://ui.test"]"#, apiKey: "k").test(.router) { client in
            let preflight = try await client.executeRequest(
                uri: "/v1/chat/completions", method: .options,
                headers: [.origin: "http://ui.test", .accessControlRequestMethod: "POST"], body: nil)
            #expect(preflight.status == .noContent || preflight.status == .ok)
            #expect(preflight.headers[.accessControlAllowOrigin] == "http://ui.test")
            #expect(preflight.headers[.accessControlAllowHeaders]?.lowercased().contains("authorization") == true)
            let models = try await client.get("/v1/models", headers: [.origin: "http://localhost:3000", .authorization: "Bearer k"])
            #expect(models.status == .ok)
            #expect(models.headers[.accessControlAllowOrigin] == "http://localhost:3000")
            let refused = try await client.get("/v1/models", headers: [.origin: "http://localhost:3000"])
            #expect(refused.status == .unauthorized)
            #expect(refused.headers[.accessControlAllowOrigin] == "http://localhost:3000")
            let other = try await client.get("/v1/models", headers: [.origin: "http://evil.test", .authorization: "Bearer k"])
            #expect(other.headers[.accessControlAllowOrigin] == nil)
        }
    }

    @Test("* allows any origin; without --allowed-origins no CORS header is sent")
    func anyAndNone() async throws {
        try await application("*").test(.router) { client in
            let response = try await client.get("/health", headers: [.origin: "http://anything.test"])
            #expect(response.headers[.accessControlAllowOrigin] == "*")
        }
        try await application(nil).test(.router) { client in
            let response = try await client.get("/health", headers: [.origin: "http://anything.test"])
            #expect(response.headers[.accessControlAllowOrigin] == nil)
        }
    }

    @Test("an empty origin in the list is refused naming the flag")
    func badList() {
        #expect(throws: ServerConfigurationError.self) { try AllowedOrigins(parsing: "http://a,,http://b") }
        #expect((try? AllowedOrigins(parsing: "http://a, http://b"))?.origins == ["http://a", "http://b"])
    }
}
