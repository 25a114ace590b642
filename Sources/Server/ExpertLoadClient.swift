// A client of a running server's expert-load routes (`switchyard balance --server URL`).
public import Coordinator
public import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Reads `GET /v1/expert_load` and drives the recording routes of a Switchyard server.
public struct ExpertLoadClient: Sendable {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    public let server: String
    public let apiKey: String?

    /// - Throws: `ClientError` when `server` is not an http(s) URL.
    public init(server: String, apiKey: String?) throws(ClientError) {
        var base = server
        while base.hasSuffix("/") { base.removeLast() }
        guard base.hasPrefix("http://") || base.hasPrefix("https://"), URL(string: base + "/v1/expert_load") != nil else {
            throw ClientError("--server is \"\(server)\", but must be a URL like http://127.0.0.1:8080")
        }
        self.server = base
        self.apiKey = apiKey
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
        var request = URLRequest(url: URL(string: server + path)!)
        request.httpMethod = method
        request.timeoutInterval = 60
        if let apiKey { request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "authorization") }

        let (events, continuation) = AsyncThrowingStream<ResponseEvent, any Error>.makeStream()
        let delegate = StreamingDelegate(continuation: continuation)
        let session = URLSession(configuration: .ephemeral, delegate: delegate, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        let task = session.dataTask(with: request)
        continuation.onTermination = { _ in task.cancel() }
        task.resume()

        var status: Int?
        var body = Data()
        do {
            for try await event in events {
                switch event {
                case .status(let code): status = code
                case .data(let chunk): body.append(chunk)
                }
            }
        } catch {
            throw ClientError("cannot reach \(server): \(error.localizedDescription); is `switchyard serve` running there?")
        }
        guard let status else { throw ClientError("\(server) closed the connection without an answer to \(method) \(path)") }
        guard status == 200 else {
            let message = (try? JSONSerialization.jsonObject(with: body) as? [String: Any])
                .flatMap { $0["error"] as? [String: Any] }?["message"] as? String
            throw ClientError("\(server) answered \(status) to \(method) \(path): \(message ?? String(decoding: body, as: UTF8.self))")
        }
        return body
    }
}
