// A client of a running server's expert-load routes (`switchyard balance --server URL`).
public import Coordinator
public import Foundation

/// Reads `GET /v1/expert_load` and drives the recording routes of a Switchyard server.
public struct ExpertLoadClient: Sendable {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    public let server: String
    public let apiKey: String?
    /// How https servers are verified.
    public let connection: APIConnection

    /// - Throws: `ClientError` when `server` is not an http(s) URL.
    public init(server: String, apiKey: String?, connection: APIConnection = APIConnection()) throws(ClientError) {
        var base = server
        while base.hasSuffix("/") { base.removeLast() }
        guard base.hasPrefix("http://") || base.hasPrefix("https://"), URL(string: base + "/v1/expert_load") != nil else {
            throw ClientError("--server is \"\(server)\", but must be a URL like http://127.0.0.1:8080")
        }
        self.server = base
        self.apiKey = apiKey
        self.connection = connection
    }

    /// `GET /v1/expert_load[?window=…]`.
    /// - Returns: the body as the server sent it, and its decoded form.
    /// - Throws: `ClientError` naming the server when it cannot be reached, answers an error, or
    ///   sends a body that is not an expert-load report.
    public func report(window: String?) async throws(ClientError) -> (json: Data, report: ExpertLoadReport) {
        var path = "/v1/expert_load"
        if let window {
            var components = URLComponents()
            components.queryItems = [URLQueryItem(name: "window", value: window)]
            path += components.percentEncodedQuery.map { "?" + $0 } ?? ""
        }
        let data = try await request("GET", path)
        do {
            return (data, try JSONDecoder().decode(ExpertLoadReport.self, from: data))
        } catch {
            throw ClientError("\(server)\(path) did not answer an expert-load report: \(error)")
        }
    }

    /// `POST /v1/expert_load/record/start` or `…/stop`, or `GET /v1/expert_load/record`.
    /// - Returns: the JSON body.
    public func recording(_ action: RecordingAction) async throws(ClientError) -> Data {
        switch action {
        case .start: try await request("POST", "/v1/expert_load/record/start")
        case .stop: try await request("POST", "/v1/expert_load/record/stop")
        case .read: try await request("GET", "/v1/expert_load/record")
        }
    }

    /// What to do with the server's routing recording.
    public enum RecordingAction: String, Sendable, CaseIterable {
        case start, stop, read
    }

    /// Sends one request; returns the body of a 200 answer.
    private func request(_ method: String, _ path: String) async throws(ClientError) -> Data {
        let headers = apiKey.map { [("authorization", "Bearer \($0)")] } ?? []
        let response = try await connection.send(method, server + path, headers: headers, timeout: .seconds(60))
        let status = response.status
        let body: Data
        do {
            body = try await response.collect()
        } catch {
            throw ClientError("\(server) broke off its answer to \(method) \(path): \(error)")
        }
        guard status == 200 else {
            let message = (try? JSONSerialization.jsonObject(with: body) as? [String: Any])
                .flatMap { $0["error"] as? [String: Any] }?["message"] as? String
            throw ClientError("\(server) answered \(status) to \(method) \(path): \(message ?? String(decoding: body, as: UTF8.self))")
        }
        return body
    }
}
