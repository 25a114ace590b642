// The router's own route table, walked with and without the API key: a route added later is
// covered without anyone remembering to add it here.
import Foundation
import Hummingbird
import HummingbirdTesting
import Server
import Testing

/// One method and path the router answers, with a concrete URI to request it by.
struct TableRoute: Sendable, CustomStringConvertible {
    let method: HTTPRequest.Method
    /// The route's path as the router lists it (`/v1/models/{id}`).
    let path: String
    /// The path with every capture or wildcard filled in (`/v1/models/x`).
    let uri: String

    var description: String { "\(method) \(path)" }
    /// Whether the API key guards it: every /v1 route does; /health, /metrics, /version and the
    /// tokenize routes stay open, as in vLLM.
    var needsKey: Bool { path == "/v1" || path.hasPrefix("/v1/") }
}

@Suite("The route table")
struct RouteTableTests {
    static let key = "s3cret"

    /// Every route of the router, read from the router itself.
    static let routes: [TableRoute] = makeRouter(
        service: FakeGenerationService(), configuration: ServerConfiguration(apiKey: key)
    ).routes.map { route in
        let path = route.path.description
        let uri = path.split(separator: "/", omittingEmptySubsequences: false).map { component in
            component.contains("{") || component.contains("*") ? "x" : String(component)
        }.joined(separator: "/")
        return TableRoute(method: route.method, path: path, uri: uri)
    }

    @Test("the table holds the routes the README documents, so an empty or broken table cannot pass the walk")
    func holdsKnownRoutes() {
        let listed = Set(Self.routes.map(\.description))
        for known in [
            "GET /health", "GET /metrics", "GET /v1/models", "POST /v1/completions", "POST /v1/chat/completions",
            "GET /v1/expert_load", "GET /v1/expert_load/record", "POST /v1/expert_load/record/start",
            "POST /v1/expert_load/record/stop", "GET /v1/placement", "POST /v1/placement", "POST /tokenize",
            "POST /detokenize", "GET /version",
        ] {
            #expect(listed.contains(known), "\(known) is missing from the router's table: \(listed.sorted())")
        }
    }

    @Test(
        "with an API key, every /v1 route refuses a request without the key or with a wrong one (401, an authentication_error envelope) and admits one with it; the others need none",
        arguments: routes)
    func withKey(route: TableRoute) async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service, apiKey: Self.key).test(.router) { client in
            for authorization in [nil, "Bearer nope", "Basic \(Self.key)", "Bearer \(Self.key)"] {
                let response = try await Self.request(client, route, authorization: authorization)
                let refused = route.needsKey && authorization != "Bearer \(Self.key)"
                if refused {
                    #expect(response.status == .unauthorized, "\(route), authorization \(authorization ?? "none")")
                    #expect(
                        try response.errorObject()["type"] as? String == "authentication_error",
                        "\(route), authorization \(authorization ?? "none")")
                } else {
                    Self.expectAnswered(response, route, "authorization \(authorization ?? "none")")
                }
            }
        }
        if route.needsKey {
            // Refused requests never reach the engine; only the one with the key may have.
            #expect(service.submitted.count <= 1, "\(route)")
        }
    }

    @Test("without an API key, every route answers without authorization", arguments: routes)
    func withoutKey(route: TableRoute) async throws {
        try await makeTestApplication(FakeGenerationService()).test(.router) { client in
            Self.expectAnswered(try await Self.request(client, route, authorization: nil), route, "no key configured")
        }
    }

    @Test("the walk tells the router's own 404 for a path it lacks from a route's 404")
    func detectsUnrouted() async throws {
        try await makeTestApplication(FakeGenerationService()).test(.router) { client in
            let missing = TableRoute(method: .get, path: "/v1/no_such_route", uri: "/v1/no_such_route")
            let response = try await Self.request(client, missing, authorization: nil)
            #expect(response.status == .notFound && response.text.contains("no route GET "), "\(response.text)")
        }
    }

    /// Requests `route` with an empty JSON object as its body where the method carries one.
    static func request(
        _ client: some TestClientProtocol, _ route: TableRoute, authorization: String?
    ) async throws -> TestResponse {
        var headers = HTTPFields()
        if let authorization { headers[.authorization] = authorization }
        let body: ByteBuffer?
        if route.method == .get || route.method == .head || route.method == .delete {
            body = nil
        } else {
            headers[.contentType] = "application/json"
            body = ByteBuffer(string: "{}")
        }
        return try await client.executeRequest(uri: route.uri, method: route.method, headers: headers, body: body)
    }

    /// The route handled the request: not refused for its key, and not the router's "no route"
    /// (an empty body may still be a 400, 404 or 409 of the route's own, such as GET /v1/placement
    /// without workers).
    static func expectAnswered(_ response: TestResponse, _ route: TableRoute, _ context: String) {
        #expect(response.status != .unauthorized, "\(route), \(context): \(response.text)")
        let unrouted = response.status == .notFound && response.text.contains("no route \(route.method) ")
        #expect(!unrouted && response.status != .methodNotAllowed, "\(route), \(context): \(response.text)")
    }
}
