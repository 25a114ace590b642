// Helpers for the HTTP tests: building the application over a fake engine, sending JSON, reading
// JSON and server-sent events back.
import Coordinator
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Server
import Testing

/// The application under test over `service`, on an ephemeral port.
func makeTestApplication(
    _ service: FakeGenerationService, apiKey: String? = nil, maxRequestBodyBytes: Int = 1 << 20,
    requestBodyTimeout: Duration = .seconds(60), onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) -> some ApplicationProtocol {
    var logger = Logger(label: "server-tests")
    logger.logLevel = .critical
    return makeApplication(
        service: service,
        configuration: ServerConfiguration(
            host: "127.0.0.1", port: 0, apiKey: apiKey, maxRequestBodyBytes: maxRequestBodyBytes,
            requestBodyTimeout: requestBodyTimeout),
        logger: logger, onServerRunning: onServerRunning)
}

extension TestClientProtocol {
    /// POSTs a JSON body.
    func post(_ uri: String, _ json: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        var headers = headers
        headers[.contentType] = "application/json"
        return try await executeRequest(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: json))
    }

    func get(_ uri: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await executeRequest(uri: uri, method: .get, headers: headers, body: nil)
    }
}

extension TestResponse {
    var text: String { String(buffer: body) }

    /// The body as a JSON object.
    func json() throws -> [String: Any] {
        let value = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return try #require(value as? [String: Any], "body is not a JSON object: \(text)")
    }

    /// The `error` object of an envelope.
    func errorObject() throws -> [String: Any] {
        try #require(try json()["error"] as? [String: Any], "no error envelope in \(text)")
    }

    /// The JSON payloads of a server-sent event stream, which must end with `data: [DONE]`.
    func events() throws -> [[String: Any]] {
        let blocks = text.components(separatedBy: "\n\n")
        #expect(blocks.last == "", "the stream must end with a blank line")
        let payloads = blocks.dropLast().map { block -> String in
            #expect(block.hasPrefix("data: "), "every event is a data line: \(block)")
            return String(block.dropFirst("data: ".count))
        }
        #expect(payloads.last == "[DONE]", "the stream must end with [DONE]")
        return try payloads.dropLast().map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }
}

/// The `choices` of a response or chunk.
func choices(_ object: [String: Any]) throws -> [[String: Any]] {
    try #require(object["choices"] as? [[String: Any]], "no choices in \(object)")
}

/// What the fake generates for `maxTokens` tokens starting at word `offset`.
func fakeText(maxTokens: Int, offset: Int = 0) -> String {
    (0..<maxTokens).map { FakeGenerationService.words[($0 + offset) % FakeGenerationService.words.count] }.joined()
}
