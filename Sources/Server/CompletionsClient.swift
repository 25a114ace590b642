// A client of a running Switchyard HTTP API (`switchyard generate --server URL`), on Foundation's
// URLSession (no TLS stack of our own to build).
public import Coordinator
public import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

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

    public init(server: String, apiKey: String?) throws(ClientError) {
        var base = server
        while base.hasSuffix("/") { base.removeLast() }
        guard base.hasPrefix("http://") || base.hasPrefix("https://"), URL(string: base + "/v1/completions") != nil else {
            throw ClientError("--server is \"\(server)\", but must be a URL like http://127.0.0.1:8080")
        }
        self.server = base
        self.apiKey = apiKey
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
        var request = URLRequest(url: URL(string: server + "/v1/completions")!)
        request.httpMethod = "POST"
        request.timeoutInterval = 3600
        request.setValue("application/json", forHTTPHeaderField: "content-type")
        if let apiKey { request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "authorization") }
        request.httpBody = try JSONSerialization.data(withJSONObject: body)

        let (events, continuation) = AsyncThrowingStream<ResponseEvent, any Error>.makeStream()
        let delegate = StreamingDelegate(continuation: continuation)
        let session = URLSession(configuration: .ephemeral, delegate: delegate, delegateQueue: nil)
        let task = session.dataTask(with: request)
        continuation.onTermination = { _ in task.cancel() }
        task.resume()

        var iterator = events.makeAsyncIterator()
        let status: Int
        do {
            guard case .status(let code) = try await iterator.next() else {
                throw ClientError("\(server) closed the connection without an answer")
            }
            status = code
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError("cannot reach \(server): \(error.localizedDescription); is `switchyard serve` running there?")
        }
        let (bodyStream, bodyContinuation) = AsyncThrowingStream<Data, any Error>.makeStream()
        if status != 200 {
            var text = Data()
            while case .data(let chunk)? = try await iterator.next() { text.append(chunk) }
            session.finishTasksAndInvalidate()
            let message = (try? JSONSerialization.jsonObject(with: text) as? [String: Any])
                .flatMap { $0["error"] as? [String: Any] }?["message"] as? String
            throw ClientError("\(server) answered \(status): \(message ?? String(decoding: text, as: UTF8.self))")
        }
        // Hand the rest of the body on; the session ends with it.
        let forward = Task {
            do {
                while case .data(let chunk)? = try await iterator.next() { bodyContinuation.yield(chunk) }
                bodyContinuation.finish()
            } catch {
                bodyContinuation.finish(throwing: error)
            }
            session.finishTasksAndInvalidate()
        }
        bodyContinuation.onTermination = { _ in forward.cancel() }
        return bodyStream
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

/// What the URLSession delegate reports: the status first, then body chunks.
enum ResponseEvent: Sendable {
    case status(Int)
    case data(Data)
}

/// Turns URLSession delegate callbacks into an async stream.
final class StreamingDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    // @unchecked: the only stored property is the continuation, which is Sendable; URLSession
    // calls these methods on its own serial delegate queue.
    private let continuation: AsyncThrowingStream<ResponseEvent, any Error>.Continuation

    init(continuation: AsyncThrowingStream<ResponseEvent, any Error>.Continuation) {
        self.continuation = continuation
    }

    func urlSession(
        _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
        completionHandler: @escaping @Sendable (URLSession.ResponseDisposition) -> Void
    ) {
        continuation.yield(.status((response as? HTTPURLResponse)?.statusCode ?? 0))
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        continuation.yield(.data(data))
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        if let error { continuation.finish(throwing: error) } else { continuation.finish() }
    }
}
