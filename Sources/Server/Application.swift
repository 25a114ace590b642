// Server: Switchyard's OpenAI-compatible HTTP API (Hummingbird 2).
//
// Vocabulary:
// - route: a method and path the API answers (`POST /v1/completions`, `GET /health`, …).
// - generation plan: a checked /v1 body, holding one engine request per choice.
// - choice: one of the `n` completions of a request, generated as its own engine request.
// - chunk: one server-sent event of a streamed response (`data: {…}\n\n`), ending in `data: [DONE]`.
// - envelope: OpenAI's error body `{"error": {"message", "type", "param", "code"}}`.
//
// The engine is a `GenerationService`; this module only parses, submits, and formats.
import APIRequests
public import Coordinator
import Foundation
import Tokenization
public import Hummingbird
public import HummingbirdCore
public import Logging

/// Where and how the HTTP API listens.
public struct ServerConfiguration: Sendable, Equatable {
    /// The address to bind; 127.0.0.1 keeps the API local.
    public var host: String
    /// The TCP port; 0 picks a free one (learn it through `onServerRunning`).
    public var port: Int
    /// When set, every /v1 route needs `Authorization: Bearer <apiKey>`; /health and /metrics stay open.
    public var apiKey: String?
    /// Further API keys, each with a name for the logs; any of these or `apiKey` is accepted.
    public var apiKeys: [APIKey] = []

    /// Every accepted key: `apiKeys`, and `apiKey` named "default".
    var acceptedKeys: [APIKey] { apiKeys + (apiKey.map { [APIKey(name: "default", key: $0)] } ?? []) }
    /// The model name clients see (`model` in responses, /v1/models); nil uses the service's.
    public var modelName: String?
    /// Larger request bodies are refused with 413.
    public var maxRequestBodyBytes: Int
    /// A request body must have arrived whole this long after the request's head; one that has not
    /// is answered 408 and its connection closed, so a client that stops mid-body holds nothing.
    public var requestBodyTimeout: Duration
    /// Origins browsers may call the API from (CORS); nil sends no CORS headers.
    public var allowedOrigins: AllowedOrigins?

    /// A configuration; the defaults listen on 127.0.0.1:8000 without a key and take bodies up to
    /// 4 MiB that arrive within 60 s.
    public init(
        host: String = "127.0.0.1", port: Int = 8000, apiKey: String? = nil, modelName: String? = nil,
        maxRequestBodyBytes: Int = 4 << 20, requestBodyTimeout: Duration = .seconds(60)
    ) {
        self.host = host
        self.port = port
        self.apiKey = apiKey
        self.modelName = modelName
        self.maxRequestBodyBytes = maxRequestBodyBytes
        self.requestBodyTimeout = requestBodyTimeout
    }
}

/// Builds the HTTP API over `service`, ready to run as a `Service` (in a `ServiceGroup`, or with
/// `runService()`). It starts no tasks of its own; each request is handled in the server's tasks.
///
/// - Parameters:
///   - service: the engine requests are submitted to.
///   - configuration: address, port, API key, model name, body limit.
///   - logger: the server's logger.
///   - onServerRunning: called once the socket is bound, with the bound port (useful with port 0).
///   - server: plain HTTP/1.1, or with TLS (``httpServer(tls:)``).
/// - Returns: the application; nothing listens until it runs.
public func makeApplication(
    service: some GenerationService,
    configuration: ServerConfiguration,
    logger: Logger,
    server: HTTPServerBuilder = .http1(),
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) -> some ApplicationProtocol {
    Application(
        router: makeRouter(service: service, configuration: configuration),
        server: server,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port)),
        onServerRunning: { channel in
            await onServerRunning(channel.localAddress?.port ?? configuration.port)
        },
        logger: logger)
}

/// The API's routes over `service`, with the error envelope and (when `configuration.apiKey` is
/// set) the bearer check on /v1. Its `routes` list every method and path the API answers, which
/// the route-table tests walk.
public func makeRouter(
    service: some GenerationService, configuration: ServerConfiguration
) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    // Outermost: a line for every request, refusals and unknown routes included.
    router.add(middleware: AccessLogMiddleware())
    // Outside the error envelope, so refusals carry the CORS headers too.
    if let origins = configuration.allowedOrigins {
        if !origins.allowsAny { router.add(middleware: OriginFilterMiddleware(allowed: Set(origins.origins))) }
        router.add(middleware: CORSMiddleware(allowOrigin: origins.allowsAny ? .all : .originBased))
    }
    // Before the routes, so it also sees unknown routes and the auth middleware's refusals.
    router.add(middleware: ErrorEnvelopeMiddleware())
    let keys = configuration.acceptedKeys
    let keyCounter = keys.isEmpty ? nil : APIKeyRequestCounter(keys: keys)
    let routes = Routes(
        service: service, configuration: configuration, preparation: RequestPreparation(), keyCounter: keyCounter)

    // Without a valid key (when keys are set) /health says only its status: the reason names the
    // worker endpoint and the model path, which are nobody else's business.
    router.get("health") { request, _ in
        routes.health(withReason: keys.isEmpty || BearerAuthMiddleware<BasicRequestContext>.keyName(of: request, keys: keys) != nil)
    }
    router.get("metrics") { _, _ in routes.metrics() }
    // As vLLM: outside /v1, without a key (a version is no secret, and monitors read it).
    router.get("version") { _, _ in routes.jsonResponse(.ok, VersionJSON(version: switchyardVersion)) }
    router.post("tokenize") { request, _ in try await routes.tokenize(request, body: request.body) }
    router.post("detokenize") { request, _ in try await routes.detokenize(request, body: request.body) }

    let v1 = router.group("v1")
    if let keyCounter {
        v1.add(middleware: BearerAuthMiddleware(keys: keys, counter: keyCounter))
    }
    v1.get("models") { _, _ in routes.models() }
    v1.post("completions") { request, context in
        try await routes.answerThenClose(request, context: context) { body in
            try await routes.generate(request, body: body, endpoint: .completions, logger: context.logger)
        }
    }
    v1.post("chat/completions") { request, context in
        try await routes.answerThenClose(request, context: context) { body in
            try await routes.generate(request, body: body, endpoint: .chat, logger: context.logger)
        }
    }
    v1.get("expert_load") { request, _ in try routes.expertLoad(request) }
    v1.get("expert_load/record") { _, _ in routes.expertLoadRecording() }
    v1.post("expert_load/record/start") { _, _ in routes.startExpertLoadRecording() }
    v1.post("expert_load/record/stop") { _, _ in routes.stopExpertLoadRecording() }
    v1.get("placement") { _, _ in try routes.placement() }
    v1.post("placement") { request, context in
        try await routes.answerThenClose(request, context: context) { body in
            try await routes.applyPlacement(request, body: body, logger: context.logger)
        }
    }
    return router
}

/// The route handlers, over one service.
struct Routes<Service: GenerationService>: Sendable {
    let service: Service
    let configuration: ServerConfiguration
    let preparation: RequestPreparation
    /// Requests per API key name, when keys are set.
    var keyCounter: APIKeyRequestCounter? = nil

    var modelName: String { configuration.modelName ?? service.modelName }

    // MARK: Health, metrics, models

    func health(withReason: Bool = true) -> Response {
        switch service.health() {
        case .ready:
            return jsonResponse(.ok, HealthJSON(status: "ok", reason: nil))
        case .degraded(let reason):
            return jsonResponse(.ok, HealthJSON(status: "degraded", reason: withReason ? reason : nil))
        case .notReady(let reason), .stalled(let reason):
            return jsonResponse(.serviceUnavailable, HealthJSON(status: "unavailable", reason: withReason ? reason : nil))
        }
    }

    func metrics() -> Response {
        var headers = HTTPFields()
        headers[.contentType] = PrometheusExposition.contentType
        let text = PrometheusExposition.render(service.metrics()) + (keyCounter?.exposition() ?? "")
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    func models() -> Response {
        jsonResponse(
            .ok,
            ModelListJSON(data: [
                .init(id: modelName, created: Int(Date().timeIntervalSince1970), maxModelLength: service.contextLength)
            ]))
    }

    // MARK: Expert load

    /// `GET /v1/expert_load[?window=60s]`: tokens per expert, balancedness and per-worker load,
    /// since start and over the sliding window.
    func expertLoad(_ request: Request) throws(APIError) -> Response {
        let window = request.uri.queryParameters.get("window")
        do {
            return jsonResponse(.ok, try service.expertLoad(window: window))
        } catch {
            throw APIError(error)
        }
    }

    /// `GET /v1/expert_load/record`: the current or last recording, with its steps.
    func expertLoadRecording() -> Response {
        jsonResponse(.ok, service.expertLoadRecording())
    }

    /// `POST /v1/expert_load/record/start`: starts a new recording; answers its status.
    func startExpertLoadRecording() -> Response {
        jsonResponse(.ok, service.startExpertLoadRecording())
    }

    /// `POST /v1/expert_load/record/stop`: stops recording; answers its status.
    func stopExpertLoadRecording() -> Response {
        jsonResponse(.ok, service.stopExpertLoadRecording())
    }

    // MARK: Generation

    // MARK: The client's connection

    /// Answers a request whose handling reads the body and may run long: `operation` gets the body
    /// and is cancelled when the client closes its side of the connection, which cancels the engine
    /// requests it awaits (a client that gave up on a whole response stops its generation too).
    ///
    /// Watching for the close reads the connection to its end, so no further request can follow on
    /// it: the response says `Connection: close`, and the connection closes after it.
    func answerThenClose(
        _ request: Request, context: some RequestContext, _ operation: (RequestBody) async throws -> Response
    ) async throws -> Response {
        var response: Response
        do {
            response = try await request.body.consumeWithCancellationOnInboundClose(operation)
        } catch let error as APIError {
            response = try error.response(from: request, context: context)
        } catch is CancellationError {
            // The client is gone; nobody reads this (nginx's "client closed request").
            response = Response(status: .init(code: 499, reasonPhrase: "Client Closed Request"))
        }
        response.headers[.connection] = "close"
        return response
    }

    /// Parses the body, submits one engine request per choice, and answers whole or streamed.
    func generate(_ request: Request, body: RequestBody, endpoint: Endpoint, logger: Logger) async throws -> Response {
        let bytes = try await readBody(body, of: request)
        // Parsing, the chat template and tokenizing a prompt of up to a few MB take CPU time: off
        // the cooperative pool (see `RequestPreparation`).
        let plan = try await preparation.run { [service, modelName] () throws(APIError) -> GenerationPlan in
            let body = try JSONObject(parsing: bytes)
            try GenerationPlan.checkModel(body, served: [modelName])
            switch endpoint {
            case .completions:
                return try GenerationPlan.completions(
                    body, tokenizer: service.tokenizer, contextLength: service.contextLength)
            case .chat:
                return try GenerationPlan.chat(
                    body, tokenizer: service.tokenizer, contextLength: service.contextLength
                ) { chat throws(SubmitError) in
                    try service.applyChatTemplate(
                        chat.messages, tools: chat.tools, addGenerationPrompt: chat.addGenerationPrompt,
                        arguments: chat.arguments)
                }
            }
        }
        if let user = plan.user { RequestTokenCounts.current?.record(user: user) }
        // The client may have left while its prompt was prepared.
        try Task.checkCancellation()

        // All choices are accepted before anything is sent, so a refusal is a plain HTTP error.
        // A refusal after some choices were accepted drops their streams, which cancels them.
        var streams: [AsyncThrowingStream<GenerationEvent, any Error>] = []
        for engineRequest in plan.requests {
            do {
                streams.append(try service.submit(engineRequest))
            } catch {
                throw APIError(error)
            }
        }

        let id =
            (endpoint == .chat ? "chatcmpl-" : "cmpl-")
            + (plan.requestID ?? UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased())
        let assembler = ResponseAssembler(
            endpoint: endpoint, id: id, created: Int(Date().timeIntervalSince1970), model: modelName, plan: plan,
            strings: TokenStrings(tokenizer: service.tokenizer))
        if plan.stream {
            return streamingResponse(streams, assembler: assembler, includeUsage: plan.includeUsage, logger: logger)
        }

        var whole = assembler
        defer { RequestTokenCounts.current?.record(whole.usage) }
        do {
            try await forEachEvent(of: streams) { index, event in
                _ = whole.record(event, choice: index)
            }
        } catch is CancellationError {
            logger.info("request \(assembler.id): the client went away; its generation is cancelled")
            throw CancellationError()
        } catch {
            throw APIError(generationFailure: error)
        }
        return jsonResponse(.ok, whole.response)
    }

    /// Server-sent events: one chunk per piece of text, a finishing chunk per choice, the usage
    /// chunk if asked, then `[DONE]`. A failed write (the client left) ends the iteration, which
    /// cancels the engine requests; a failed request sends an error event before `[DONE]`.
    private func streamingResponse(
        _ streams: [AsyncThrowingStream<GenerationEvent, any Error>], assembler: ResponseAssembler, includeUsage: Bool,
        logger: Logger
    ) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        let tokenCounts = RequestTokenCounts.current
        let body = ResponseBody { writer in
            var assembler = assembler
            defer { tokenCounts?.record(assembler.usage) }
            func send(_ bytes: [UInt8]) async throws(ClientGone) {
                do {
                    try await writer.write(ByteBuffer(bytes: bytes))
                } catch {
                    throw ClientGone(underlying: error)
                }
            }
            do {
                for index in 0..<assembler.plan.choiceCount {
                    if let opening = assembler.opening(choice: index) { try await send(ServerSentEvents.data(opening)) }
                }
                do {
                    try await forEachEvent(of: streams) { index, event in
                        for chunk in assembler.record(event, choice: index) {
                            try await send(ServerSentEvents.data(chunk))
                        }
                    }
                    if includeUsage { try await send(ServerSentEvents.data(assembler.usageChunk)) }
                } catch let error as ClientGone {
                    throw error
                } catch {
                    logger.warning("request \(assembler.id) failed while streaming: \(error)")
                    try await send(ServerSentEvents.data(APIError(generationFailure: error).envelope))
                }
                try await send(ServerSentEvents.done)
            } catch let gone as ClientGone {
                logger.info("request \(assembler.id): the client went away; its generation is cancelled")
                throw gone.underlying
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    /// `request`'s body, read from `body`: at most `maxRequestBodyBytes`, arrived within
    /// `requestBodyTimeout`.
    /// - Throws: `APIError` 413 naming the limit, 408 naming the timeout, or 400 if the body breaks off.
    func readBody(_ body: RequestBody, of request: Request) async throws(APIError) -> [UInt8] {
        let limit = configuration.maxRequestBodyBytes
        let tooLarge = APIError(
            status: .contentTooLarge, type: "invalid_request_error",
            message: "the request body is larger than the limit of \(limit) bytes (serve --max-body-bytes)")
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit { throw tooLarge }
        let timeout = configuration.requestBodyTimeout
        let timedOut = APIError(
            status: .requestTimeout, type: "invalid_request_error",
            message: "the request body did not arrive within \(secondsText(timeout)) "
                + "(serve --body-timeout); send the whole body at once")
        do {
            return try await withThrowingTaskGroup(of: [UInt8].self) { group in
                group.addTask {
                    let buffer = try await body.collect(upTo: limit)
                    return Array(buffer.readableBytesView)
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    throw timedOut
                }
                defer { group.cancelAll() }
                guard let bytes = try await group.next() else { preconditionFailure("the group has two tasks") }
                return bytes
            }
        } catch let error as APIError {
            throw error
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw tooLarge
        } catch is CancellationError {
            throw .invalidRequest(param: nil, message: "the request body was cut off: the client closed the connection")
        } catch {
            throw .invalidRequest(param: nil, message: "the request body could not be read: \(error)")
        }
    }

    func jsonResponse(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: value.jsonBytes())))
    }
}

/// `60 s`, `0.5 s`.
func secondsText(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    return attoseconds == 0 ? "\(seconds) s" : "\(Double(seconds) + Double(attoseconds) / 1e18) s"
}

/// Writing to the client failed: it closed the connection.
private struct ClientGone: Error {
    let underlying: any Error
}

/// Framing of server-sent events.
enum ServerSentEvents {
    /// `data: <json>\n\n`.
    static func data(_ value: some Encodable) -> [UInt8] {
        Array("data: ".utf8) + value.jsonBytes() + Array("\n\n".utf8)
    }
    /// The last event of every stream.
    static let done = Array("data: [DONE]\n\n".utf8)
}

/// One event of choice `index`, or the end of its stream.
private enum ChoiceOutcome: Sendable {
    case event(Int, GenerationEvent)
    case failed(any Error)
    case ended
}

/// Calls `body` with every event of every stream, in arrival order, tagged with the stream's
/// index. Returns when all streams have ended; rethrows the first stream error or `body` error,
/// after cancelling the iteration of the other streams (which cancels their requests).
func forEachEvent(
    of streams: [AsyncThrowingStream<GenerationEvent, any Error>],
    _ body: (Int, GenerationEvent) async throws -> Void
) async throws {
    if streams.count == 1 {
        for try await event in streams[0] { try await body(0, event) }
        try Task.checkCancellation()
        return
    }
    let (merged, continuation) = AsyncStream.makeStream(of: ChoiceOutcome.self)
    try await withThrowingTaskGroup(of: Void.self) { group in
        for (index, stream) in streams.enumerated() {
            group.addTask {
                do {
                    for try await event in stream { continuation.yield(.event(index, event)) }
                    continuation.yield(.ended)
                } catch {
                    continuation.yield(.failed(error))
                }
            }
        }
        var open = streams.count
        for await outcome in merged {
            switch outcome {
            case .event(let index, let event): try await body(index, event)
            case .failed(let error): throw error
            case .ended: open -= 1
            }
            if open == 0 { break }
        }
        continuation.finish()
        // Iteration stops early only when this task is cancelled.
        try Task.checkCancellation()
    }
}

/// /version's body, as vLLM's.
struct VersionJSON: Encodable {
    let version: String
}

/// /health's body.
struct HealthJSON: Encodable {
    let status: String
    let reason: String?
}

/// /v1/models's body.
struct ModelListJSON: Encodable {
    struct Model: Encodable {
        let id: String
        var object = "model"
        let created: Int
        var ownedBy = "switchyard"
        let maxModelLength: Int
        enum CodingKeys: String, CodingKey {
            case id, object, created
            case ownedBy = "owned_by"
            case maxModelLength = "max_model_len"
        }
    }
    var object = "list"
    let data: [Model]
}
