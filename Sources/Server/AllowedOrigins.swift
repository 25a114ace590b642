// CORS for browser front ends (`serve --allowed-origins`): Hummingbird's CORSMiddleware answers
// preflights and adds the headers; the origins it echoes are limited to the configured ones.
import Foundation
import Hummingbird

/// The origins a browser may call the API from; `*` allows any.
public struct AllowedOrigins: Sendable, Equatable {
    public let origins: [String]

    /// Parses vLLM's form (a JSON list, `["http://a", "http://b"]`) or a comma-separated list.
    /// - Throws: a message naming the flag when an entry is empty.
    public init(parsing text: String) throws(ServerConfigurationError) {
        var body = Substring(text.trimmingCharacters(in: .whitespaces))
        if body.hasPrefix("["), body.hasSuffix("]") { body = body.dropFirst().dropLast() }
        let entries = body.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
        }
        guard !entries.isEmpty, !entries.contains(where: \.isEmpty) else {
            throw ServerConfigurationError(
                "--allowed-origins '\(text)': give origins such as http://localhost:3000, comma-separated or as a "
                    + "JSON list, or * for any")
        }
        origins = entries
    }

    public var allowsAny: Bool { origins.contains("*") }
}

/// A configuration value that cannot be used; the message names the flag.
public struct ServerConfigurationError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Drops an `Origin` header that is not allowed, so the CORS middleware after it adds no headers
/// for it (the browser then refuses the response, as CORS intends).
struct OriginFilterMiddleware<Context: RequestContext>: RouterMiddleware {
    let allowed: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin], !allowed.contains(origin) else { return try await next(request, context) }
        var head = request.head
        head.headerFields[.origin] = nil
        return try await next(Request(head: head, body: request.body), context)
    }
}
