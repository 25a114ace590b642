// Errors in OpenAI's envelope: {"error": {"message", "type", "param", "code"}}. Every failure a
// client can see — a bad body, a refused request, an unknown route, a missing key — goes through
// `APIError`, so clients get one shape whatever went wrong.
import Coordinator
import Foundation
import Hummingbird
import Logging
import Tokenization

/// An HTTP error with OpenAI's error body.
struct APIError: Error, Sendable, Equatable, HTTPResponseError {
    let status: HTTPResponse.Status
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `rate_limit_exceeded`, …
    let type: String
    /// The request parameter at fault, if one is.
    let param: String?
    let message: String
    /// OpenAI's `code`; nil for most errors.
    let code: String?

    init(status: HTTPResponse.Status, type: String, param: String? = nil, message: String, code: String? = nil) {
        self.status = status
        self.type = type
        self.param = param
        self.message = message
        self.code = code
    }

    /// 400: the body or a parameter is wrong.
    static func invalidRequest(param: String?, message: String) -> APIError {
        APIError(status: .badRequest, type: "invalid_request_error", param: param, message: message)
    }

    /// 400: a parameter has the wrong JSON type.
    static func wrongType(param: String, expected: String, got value: JSONValue) -> APIError {
        invalidRequest(param: param, message: "\(param) must be \(expected), not \(value.typeName)")
    }

    /// 400: a parameter is out of range; `valid` states the range.
    static func outOfRange(param: String, value: String, valid: String) -> APIError {
        invalidRequest(param: param, message: "\(param) is \(value), but must be \(valid)")
    }

    /// How the engine's refusals map to HTTP.
    init(_ error: SubmitError) {
        switch error {
        case .invalid(let field, let message):
            self = .invalidRequest(param: field, message: message)
        case .queueFull(let message):
            self.init(status: .tooManyRequests, type: "rate_limit_exceeded", message: message, code: "queue_full")
        case .unavailable(let message):
            self.init(status: .serviceUnavailable, type: "service_unavailable", message: message, code: "unavailable")
        }
    }

    /// How a request that failed while generating maps to HTTP.
    init(generationFailure error: any Error) {
        switch error {
        case let error as SubmitError:
            self.init(error)
        case GenerationError.invalidRequest(let field, let message):
            self = .invalidRequest(param: field, message: message)
        case GenerationError.unavailable(let message):
            self.init(status: .serviceUnavailable, type: "service_unavailable", message: message, code: "unavailable")
        default:
            self.init(status: .internalServerError, type: "server_error", message: "generation failed: \(error)")
        }
    }

    /// The error object, as sent in the body and in a streamed error event.
    var envelope: ErrorEnvelope {
        ErrorEnvelope(error: .init(message: message, type: type, param: param, code: code))
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        return Response(
            status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: envelope.jsonBytes())))
    }
}

/// `{"error": {...}}`, with `param` and `code` present as null when absent (as OpenAI sends them).
struct ErrorEnvelope: Encodable {
    struct Body: Encodable {
        let message: String
        let type: String
        let param: String?
        let code: String?

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(message, forKey: .message)
            try container.encode(type, forKey: .type)
            try container.encode(param, forKey: .param)
            try container.encode(code, forKey: .code)
        }
        enum CodingKeys: String, CodingKey { case message, type, param, code }
    }
    let error: Body
}

extension Encodable {
    /// Compact JSON with sorted keys; these types always encode.
    func jsonBytes() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(self))
        } catch {
            preconditionFailure("encoding \(Self.self) failed: \(error)")
        }
    }
}

/// Turns every error thrown below it (unknown routes, Hummingbird's own errors, unexpected ones)
/// into the OpenAI envelope.
struct ErrorEnvelopeMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as any HTTPResponseError {
            switch error.status {
            case .notFound:
                throw APIError(
                    status: .notFound, type: "invalid_request_error",
                    message:
                        "no route \(request.method) \(request.uri.path); see /v1/completions, /v1/chat/completions, /v1/models, /health, /metrics",
                    code: "not_found")
            case .contentTooLarge:
                throw APIError(
                    status: .contentTooLarge, type: "invalid_request_error", message: "the request body is too large")
            default:
                throw APIError(
                    status: error.status, type: error.status.code >= 500 ? "server_error" : "invalid_request_error",
                    message: error.status.reasonPhrase)
            }
        } catch {
            context.logger.error("request failed: \(error)")
            throw APIError(status: .internalServerError, type: "server_error", message: "internal error: \(error)")
        }
    }
}

/// Requires `Authorization: Bearer <key>` on the routes it guards.
struct BearerAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let apiKey: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard let header = request.headers[.authorization] else {
            throw APIError(
                status: .unauthorized, type: "authentication_error",
                message: "missing API key: send the header 'Authorization: Bearer <key>'", code: "invalid_api_key")
        }
        let prefix = "Bearer "
        guard header.hasPrefix(prefix),
            Self.constantTimeEqual(Array(header.utf8.dropFirst(prefix.utf8.count)), Array(apiKey.utf8))
        else {
            throw APIError(
                status: .unauthorized, type: "authentication_error", message: "invalid API key",
                code: "invalid_api_key")
        }
        return try await next(request, context)
    }

    /// Compares without an early exit, so response time does not reveal how much of a key matched.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0
    }
}
