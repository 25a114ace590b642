// API keys of the HTTP API: several, each with a name that the logs use instead of the key.
import APIRequests
import Hummingbird
import Logging

/// One API key and the name logs give its requests (the key itself is never logged).
public struct APIKey: Sendable, Equatable {
    public var name: String
    public var key: String

    public init(name: String, key: String) {
        self.name = name
        self.key = key
    }
}

/// Requires `Authorization: Bearer <key>` with one of `keys` on the routes it guards, and tags the
/// request's log lines with the key's name (`api_key=NAME`).
struct BearerAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let keys: [APIKey]
    /// Where accepted and refused requests are counted for /metrics.
    let counter: APIKeyRequestCounter

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard request.headers[.authorization] != nil else {
            counter.refused(.missing)
            throw APIError(
                status: .unauthorized, type: "authentication_error",
                message: "missing API key: send the header 'Authorization: Bearer <key>'", code: "invalid_api_key")
        }
        guard let name = Self.keyName(of: request, keys: keys) else {
            context.logger.notice("refused a request with an invalid API key")
            counter.refused(.invalid)
            throw APIError(
                status: .unauthorized, type: "authentication_error", message: "invalid API key",
                code: "invalid_api_key")
        }
        counter.accepted(name: name)
        var context = context
        context.logger[metadataKey: "api_key"] = "\(name)"
        return try await next(request, context)
    }

    /// The name of the key `request` carries, or nil when it carries none of `keys`. Every key is
    /// compared, each in constant time, so the response time reveals neither which key nor how much
    /// of one matched.
    static func keyName(of request: Request, keys: [APIKey]) -> String? {
        let prefix = "Bearer "
        guard let header = request.headers[.authorization], header.hasPrefix(prefix) else { return nil }
        let offered = Array(header.utf8.dropFirst(prefix.utf8.count))
        var found: String?
        for key in keys where constantTimeEqual(offered, Array(key.key.utf8)) && found == nil {
            found = key.name
        }
        return found
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
