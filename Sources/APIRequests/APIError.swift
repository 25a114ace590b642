// Errors in OpenAI's envelope: {"error": {"message", "type", "param", "code"}}. Every failure a
// client can see — a bad body, a refused request, an unknown route, a missing key — goes through
// `APIError`, so clients get one shape whatever went wrong. The Server target makes it Hummingbird's
// `HTTPResponseError`.
package import Coordinator
import Foundation
package import HTTPTypes
package import Tokenization

/// An HTTP error with OpenAI's error body.
package struct APIError: Error, Sendable, Equatable {
    package let status: HTTPResponse.Status
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `rate_limit_exceeded`, …
    package let type: String
    /// The request parameter at fault, if one is.
    package let param: String?
    package let message: String
    /// OpenAI's `code`; nil for most errors.
    package let code: String?

    package init(status: HTTPResponse.Status, type: String, param: String? = nil, message: String, code: String? = nil) {
        self.status = status
        self.type = type
        self.param = param
        self.message = message
        self.code = code
    }

    /// 400: the body or a parameter is wrong.
    package static func invalidRequest(param: String?, message: String) -> APIError {
        APIError(status: .badRequest, type: "invalid_request_error", param: param, message: message)
    }

    /// 400: a parameter has the wrong JSON type.
    package static func wrongType(param: String, expected: String, got value: JSONValue) -> APIError {
        invalidRequest(param: param, message: "\(param) must be \(expected), not \(value.typeName)")
    }

    /// 400: a parameter is out of range; `valid` states the range.
    package static func outOfRange(param: String, value: String, valid: String) -> APIError {
        invalidRequest(param: param, message: "\(param) is \(value), but must be \(valid)")
    }

    /// How the engine's refusals map to HTTP.
    package init(_ error: SubmitError) {
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
    package init(generationFailure error: any Error) {
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
    package var envelope: ErrorEnvelope {
        ErrorEnvelope(error: .init(message: message, type: type, param: param, code: code))
    }
}

/// `{"error": {...}}`, with `param` and `code` present as null when absent (as OpenAI sends them).
package struct ErrorEnvelope: Encodable {
    package struct Body: Encodable {
        package let message: String
        package let type: String
        package let param: String?
        package let code: String?

        package func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(message, forKey: .message)
            try container.encode(type, forKey: .type)
            try container.encode(param, forKey: .param)
            try container.encode(code, forKey: .code)
        }
        enum CodingKeys: String, CodingKey { case message, type, param, code }
    }
    package let error: Body
}

extension Encodable {
    /// Compact JSON with sorted keys; these types always encode.
    package func jsonBytes() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(self))
        } catch {
            preconditionFailure("encoding \(Self.self) failed: \(error)")
        }
    }
}

