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

