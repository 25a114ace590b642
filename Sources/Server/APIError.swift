// APIError (in APIRequests) as Hummingbird's `HTTPResponseError`, and the middleware that puts every
// other failure into its envelope or guards /v1 with the API key.
import APIRequests
import Foundation
import Hummingbird
import Logging

extension APIError: HTTPResponseError {
    func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        return Response(
            status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: envelope.jsonBytes())))
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
