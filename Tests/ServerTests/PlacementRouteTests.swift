// /v1/placement on a server whose experts are computed in-process, and behind an API key.
import Coordinator
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("Placement routes")
struct PlacementRouteTests {
    @Test("without workers there is no placement: GET answers 404 and POST 409, saying why")
    func noPlacement() async throws {
        try await makeTestApplication(FakeGenerationService()).test(.router) { client in
            let get = try await client.get("/v1/placement")
            #expect(get.status == .notFound)
            #expect((try get.errorObject()["message"] as? String)?.contains("in-process") == true)
            let post = try await client.post("/v1/placement", #"{"workers": [{"name": "w0", "experts": []}]}"#)
            #expect(post.status == .conflict)
            #expect((try post.errorObject()["message"] as? String)?.contains("no placement") == true)
        }
    }

    @Test("with an API key, changing the placement needs the bearer token")
    func needsKey() async throws {
        try await makeTestApplication(FakeGenerationService(), apiKey: "s3cret").test(.router) { client in
            let missing = try await client.post("/v1/placement", #"{"workers": []}"#)
            #expect(missing.status == .unauthorized)
            let status = try await client.get("/v1/placement").status
            #expect(status == .unauthorized)
        }
    }
}
