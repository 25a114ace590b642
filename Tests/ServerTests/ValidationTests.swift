// Bad request bodies: each is refused with 400 (or 413) in the error envelope, naming the field.
import Coordinator
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// One bad body and the parameter its error must name.
struct BadBody: Sendable, CustomTestStringConvertible {
    let path: String
    let body: String
    let param: String?
    /// Words the message must contain (the valid range, usually).
    let mentions: String

    var testDescription: String { "\(path) \(body)" }

    static let chat = "/v1/chat/completions"
    static let completions = "/v1/completions"
    static let user = #""messages": [{"role": "user", "content": "hi"}]"#

    static let all: [BadBody] = [
        BadBody(path: completions, body: #"{"max_tokens": 3}"#, param: "prompt", mentions: "required"),
        BadBody(path: completions, body: #"{"prompt": 5}"#, param: "prompt", mentions: "token ids"),
        BadBody(path: completions, body: #"{"prompt": ""}"#, param: "prompt", mentions: "empty"),
        BadBody(path: completions, body: #"{"prompt": []}"#, param: "prompt", mentions: "empty"),
        BadBody(path: completions, body: #"{"prompt": [1, -2]}"#, param: "prompt", mentions: "prompt[1]"),
        BadBody(path: completions, body: #"{"prompt": ["a", "b"]}"#, param: "prompt", mentions: "batched"),
        BadBody(
            path: completions, body: #"{"prompt": "x", "temperature": -1}"#, param: "temperature", mentions: ">= 0"),
        BadBody(
            path: completions, body: #"{"prompt": "x", "temperature": "hot"}"#, param: "temperature",
            mentions: "a number"),
        BadBody(path: completions, body: #"{"prompt": "x", "top_p": 0}"#, param: "top_p", mentions: "(0, 1]"),
        BadBody(path: completions, body: #"{"prompt": "x", "top_p": 1.5}"#, param: "top_p", mentions: "(0, 1]"),
        BadBody(path: completions, body: #"{"prompt": "x", "top_k": -5}"#, param: "top_k", mentions: ">= 0"),
        BadBody(path: completions, body: #"{"prompt": "x", "top_k": 1.5}"#, param: "top_k", mentions: "an integer"),
        BadBody(
            path: completions, body: #"{"prompt": "x", "max_tokens": 0}"#, param: "max_tokens", mentions: "at least 1"),
        BadBody(
            path: completions, body: #"{"prompt": "x", "max_tokens": "10"}"#, param: "max_tokens",
            mentions: "an integer"),
        BadBody(path: completions, body: #"{"prompt": "x", "n": 0}"#, param: "n", mentions: "between 1 and 16"),
        BadBody(path: completions, body: #"{"prompt": "x", "n": 17}"#, param: "n", mentions: "between 1 and 16"),
        BadBody(
            path: completions, body: #"{"prompt": "x", "logprobs": 21}"#, param: "logprobs",
            mentions: "between 0 and 20"),
        BadBody(
            path: completions, body: #"{"prompt": "x", "logprobs": true}"#, param: "logprobs", mentions: "an integer"),
        BadBody(path: completions, body: #"{"prompt": "x", "stop": 3}"#, param: "stop", mentions: "array of strings"),
        BadBody(path: completions, body: #"{"prompt": "x", "stop": [""]}"#, param: "stop", mentions: "empty"),
        BadBody(path: completions, body: #"{"prompt": "x", "stream": "yes"}"#, param: "stream", mentions: "a boolean"),
        BadBody(
            path: completions, body: #"{"prompt": "x", "stream_options": {"include_usage": 1}}"#,
            param: "stream_options.include_usage", mentions: "a boolean"),
        BadBody(path: completions, body: #"{"prompt": "x", "echo": true}"#, param: "echo", mentions: "not supported"),
        BadBody(path: completions, body: #"{"prompt": "x", "seed": 1.5}"#, param: "seed", mentions: "an integer"),
        BadBody(path: completions, body: #"{"prompt": "x", "max_tokens": 1000}"#, param: "max_tokens", mentions: "256"),
        BadBody(path: chat, body: #"{"messages": []}"#, param: "messages", mentions: "empty"),
        BadBody(path: chat, body: #"{"messages": "hi"}"#, param: "messages", mentions: "an array"),
        BadBody(path: chat, body: #"{}"#, param: "messages", mentions: "required"),
        BadBody(
            path: chat, body: #"{"messages": [{"role": "wizard", "content": "hi"}]}"#, param: "messages[0].role",
            mentions: "system, user, assistant, tool"),
        BadBody(
            path: chat, body: #"{"messages": [{"content": "hi"}]}"#, param: "messages[0].role", mentions: "required"),
        BadBody(
            path: chat, body: #"{"messages": [{"role": "user", "content": 7}]}"#, param: "messages[0].content",
            mentions: "a string"),
        BadBody(path: chat, body: "{\(user), \"logprobs\": 2}", param: "logprobs", mentions: "a boolean"),
        BadBody(
            path: chat, body: "{\(user), \"logprobs\": true, \"top_logprobs\": 30}", param: "top_logprobs",
            mentions: "between 0 and 20"),
        BadBody(path: chat, body: "{\(user), \"top_logprobs\": 2}", param: "top_logprobs", mentions: "logprobs: true"),
        BadBody(
            path: chat, body: "{\(user), \"max_completion_tokens\": 0}", param: "max_completion_tokens",
            mentions: "at least 1"),
        BadBody(path: completions, body: #"{"prompt": "x""#, param: nil, mentions: "not valid JSON"),
        BadBody(path: completions, body: #"[1, 2]"#, param: nil, mentions: "JSON object"),
    ]
}

@Suite("Request validation")
struct ValidationTests {
    @Test(
        "a bad body is refused with 400 in the error envelope, naming the field and what is valid",
        arguments: BadBody.all)
    func badBody(_ bad: BadBody) async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post(bad.path, bad.body)
            #expect(response.status == .badRequest)
            let error = try response.errorObject()
            #expect(error["type"] as? String == "invalid_request_error")
            if let param = bad.param {
                #expect(error["param"] as? String == param)
            } else {
                #expect(error["param"] is NSNull)
            }
            let message = try #require(error["message"] as? String)
            #expect(message.contains(bad.mentions), "message: \(message)")
            #expect(error.keys.contains("code"))
        }
        #expect(service.submitted.isEmpty, "nothing reaches the engine")
    }

    @Test("a prompt that leaves no room in the context is refused, naming prompt and the token counts")
    func promptTooLong() async throws {
        let service = FakeGenerationService(contextLength: 4)
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post("/v1/completions", #"{"prompt": [1, 2, 3, 4, 5]}"#)
            #expect(response.status == .badRequest)
            let error = try response.errorObject()
            #expect(error["param"] as? String == "prompt")
            #expect((error["message"] as? String)?.contains("maximum context length is 4 tokens") == true)
            #expect((error["message"] as? String)?.contains("has 5 input tokens") == true)
        }
    }

    @Test("prompt tokens + max_tokens beyond the context are refused with both numbers and the limit")
    func maxTokensBeyondContext() async throws {
        let service = FakeGenerationService(contextLength: 10)
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post("/v1/completions", #"{"prompt": [1, 2, 3], "max_tokens": 8}"#)
            #expect(response.status == .badRequest)
            let error = try response.errorObject()
            #expect(error["param"] as? String == "max_tokens")
            let message = try #require(error["message"] as? String)
            #expect(message.contains("maximum context length is 10 tokens") && message.contains("requested 11 tokens"))
            #expect(message.contains("(3 in the prompt, 8 in the completion)"))
            #expect(message.contains("at most 7"))
        }
    }

    @Test("a body larger than the limit is refused with 413")
    func bodyTooLarge() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service, maxRequestBodyBytes: 64).test(.router) { client in
            let prompt = String(repeating: "a", count: 200)
            let response = try await client.post("/v1/completions", "{\"prompt\": \"\(prompt)\"}")
            #expect(response.status == .contentTooLarge)
            #expect((try response.errorObject()["message"] as? String)?.contains("64 bytes") == true)
        }
    }

    @Test(
        "a prompt over 64 bytes per context token is refused with 400 naming the field, its size and the limit",
        arguments: [
            ("/v1/completions", "prompt", #"{"prompt": "PROMPT"}"#),
            ("/v1/chat/completions", "messages", #"{"messages": [{"role": "user", "content": "PROMPT"}]}"#),
        ])
    func promptTooLong(path: String, param: String, template: String) async throws {
        let service = FakeGenerationService(contextLength: 256)
        let limit = 256 * 64
        try await makeTestApplication(service).test(.router) { client in
            let over = template.replacingOccurrences(of: "PROMPT", with: String(repeating: "x", count: limit + 1))
            let response = try await client.post(path, over)
            #expect(response.status == .badRequest)
            let error = try response.errorObject()
            #expect(error["param"] as? String == param)
            let message = try #require(error["message"] as? String)
            #expect(message.contains("is \(limit + 1) bytes, but must be at most \(limit) bytes"), "\(message)")
            #expect(message.contains("256 context tokens"), "\(message)")

            // At the limit the size passes, and the prompt is measured in tokens instead.
            let at = template.replacingOccurrences(of: "PROMPT", with: String(repeating: "x", count: limit))
            let tokens = try await client.post(path, at)
            #expect(tokens.status == .badRequest)
            let tokenMessage = try #require(try tokens.errorObject()["message"] as? String)
            #expect(tokenMessage.hasPrefix("This model's maximum context length is 256 tokens. However, your request has "), "\(tokenMessage)")
            #expect(service.submitted.isEmpty)
        }
    }

    @Test(
        "engine refusals map to HTTP: invalid 400, queue full 429, unavailable 503",
        arguments: [
            (
                SubmitError.invalid(field: "prompt", message: "token 9999 is out of range"),
                HTTPResponse.Status.badRequest,
                "invalid_request_error"
            ),
            (.queueFull("the queue holds 64 requests"), .tooManyRequests, "rate_limit_exceeded"),
            (.unavailable("worker w2 is down"), .serviceUnavailable, "service_unavailable"),
        ])
    func refusal(_ refusal: SubmitError, status: HTTPResponse.Status, type: String) async throws {
        let service = FakeGenerationService()
        service.setRefusal(refusal)
        try await makeTestApplication(service).test(.router) { client in
            for (path, body) in [
                ("/v1/completions", #"{"prompt": "x", "max_tokens": 2}"#),
                ("/v1/chat/completions", #"{"messages": [{"role": "user", "content": "hi"}], "stream": true}"#),
            ] {
                let response = try await client.post(path, body)
                #expect(response.status == status)
                let error = try response.errorObject()
                #expect(error["type"] as? String == type)
                #expect(error["message"] as? String == refusal.description.components(separatedBy: ": ").last)
            }
        }
    }

    @Test("when a later choice is refused, the choices already accepted are cancelled", .timeLimit(.minutes(1)))
    func partialRefusalCancels() async throws {
        let service = FakeGenerationService(tokenDelay: .milliseconds(20))
        service.setAcceptLimit(2)
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post("/v1/completions", #"{"prompt": "x", "max_tokens": 50, "n": 3}"#)
            #expect(response.status == .tooManyRequests)
        }
        // Only cancellations count (streams that run to their end finish instead): wait for the
        // event, bounded only generously.
        try await CancellationTests.eventually { service.cancelledStreams >= 2 }
        #expect(service.cancelledStreams == 2)
    }
}
