// A client of a running Switchyard HTTP API (`switchyard generate --server URL`), over http or
// https (APIConnection).
public import Coordinator
public import Foundation

/// Errors talking to a server; the message names the URL and what it answered.
public struct ClientError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Sends completion requests to an OpenAI-compatible server (ours or another).
public struct CompletionsClient: Sendable {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    public let server: String
    public let apiKey: String?
    /// How https servers are verified.
    public let connection: APIConnection

    public init(server: String, apiKey: String?, connection: APIConnection = APIConnection()) throws(ClientError) {
        var base = server
        while base.hasSuffix("/") { base.removeLast() }
        guard base.hasPrefix("http://") || base.hasPrefix("https://"), URL(string: base + "/v1/completions") != nil else {
            throw ClientError("--server is \"\(server)\", but must be a URL like http://127.0.0.1:8080")
        }
        self.server = base
        self.apiKey = apiKey
        self.connection = connection
    }

    /// The outcome of a streamed completion.
    public struct Summary: Sendable {
        public var finishReason: String?
        public var promptTokens: Int?
        public var completionTokens: Int?
    }

    /// POSTs `/v1/completions` with `stream: true`, calling `onText` with each piece of text.
    public func stream(_ request: GenerationRequest, onText: (String) -> Void) async throws -> Summary {
        var body = Self.body(for: request)
        body["stream"] = true
        body["stream_options"] = ["include_usage": true]
        var summary = Summary()
        var buffer = Data()
        for try await chunk in try await send(body) {
            buffer.append(chunk)
            while let end = buffer.firstRange(of: Data("\n\n".utf8)) {
                let event = String(decoding: buffer[..<end.lowerBound], as: UTF8.self)
                buffer.removeSubrange(..<end.upperBound)
                for line in event.split(separator: "\n") where line.hasPrefix("data: ") {
                    let payload = line.dropFirst("data: ".count)
                    if payload == "[DONE]" { return summary }
                    guard let object = try JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any] else {
                        continue
                    }
                    if let error = object["error"] as? [String: Any] {
                        throw ClientError("\(server) failed the request: \(error["message"] ?? error)")
                    }
                    for choice in object["choices"] as? [[String: Any]] ?? [] {
                        if let text = choice["text"] as? String, !text.isEmpty { onText(text) }
                        if let reason = choice["finish_reason"] as? String { summary.finishReason = reason }
                    }
                    if let usage = object["usage"] as? [String: Any] {
                        summary.promptTokens = usage["prompt_tokens"] as? Int
                        summary.completionTokens = usage["completion_tokens"] as? Int
                    }
                }
            }
        }
        return summary
    }

    /// POSTs `/v1/completions` and returns the response body (JSON) as the server sent it.
    public func complete(_ request: GenerationRequest) async throws -> Data {
        var data = Data()
        for try await chunk in try await send(Self.body(for: request)) { data.append(chunk) }
        return data
    }

    /// Sends the request; returns the body as it arrives once the status is 200, or throws the
    /// server's error message.
    private func send(_ body: [String: Any]) async throws -> AsyncThrowingStream<Data, any Error> {
        var headers = [("content-type", "application/json")]
        if let apiKey { headers.append(("authorization", "Bearer \(apiKey)")) }
        let response = try await connection.send(
            "POST", server + "/v1/completions", headers: headers, body: try JSONSerialization.data(withJSONObject: body),
            timeout: .seconds(3600))
        guard response.status == 200 else {
            let text = (try? await response.collect()) ?? Data()
            let message = (try? JSONSerialization.jsonObject(with: text) as? [String: Any])
                .flatMap { $0["error"] as? [String: Any] }?["message"] as? String
            throw ClientError("\(server) answered \(response.status): \(message ?? String(decoding: text, as: UTF8.self))")
        }
        return response.body
    }

    static func body(for request: GenerationRequest) -> [String: Any] {
        var body: [String: Any] = [
            "max_tokens": request.maxTokens,
            "temperature": Double(request.sampling.temperature),
            "top_p": Double(request.sampling.topP),
            "top_k": request.sampling.topK,
            "ignore_eos": request.ignoreEOS,
        ]
        switch request.prompt {
        case .text(let text): body["prompt"] = text
        case .tokenIDs(let ids): body["prompt"] = ids.map(Int.init)
        }
        if let seed = request.sampling.seed { body["seed"] = seed }
        if request.logprobs > 0 { body["logprobs"] = request.logprobs }
        if !request.stop.isEmpty { body["stop"] = request.stop }
        return body
    }
}
