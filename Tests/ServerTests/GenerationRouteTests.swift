// /v1/completions and /v1/chat/completions over the fake engine: whole and streamed responses,
// choices, logprobs, stop strings, usage, and failures while streaming.
import Coordinator
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import Tokenization

@Suite("Generation routes")
struct GenerationRouteTests {
    @Test("a completion returns the engine's text, finish reason and usage in OpenAI's shape")
    func completion() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post("/v1/completions", #"{"prompt": "Hello there", "max_tokens": 5}"#)
            #expect(response.status == .ok)
            let json = try response.json()
            #expect((json["id"] as? String)?.hasPrefix("cmpl-") == true)
            #expect(json["object"] as? String == "text_completion")
            #expect(json["model"] as? String == "fake-moe")
            #expect(json["created"] is Int)
            let choice = try #require(try choices(json).first)
            #expect(choice["text"] as? String == fakeText(maxTokens: 5))
            #expect(choice["index"] as? Int == 0)
            #expect(choice["finish_reason"] as? String == "length")
            #expect(choice["logprobs"] is NSNull)
            let usage = try #require(json["usage"] as? [String: Int])
            let promptTokens = service.tokenizer.encode("Hello there").count
            #expect(usage == ["prompt_tokens": promptTokens, "completion_tokens": 5, "total_tokens": promptTokens + 5])
        }
        let request = try #require(service.submitted.first)
        // Tokenized once by the server, off the request path; the engine gets the ids.
        #expect(request.prompt == .tokenIDs(service.tokenizer.encode("Hello there")))
        #expect(request.maxTokens == 5)
    }

    @Test("a prompt of token ids is passed to the engine as given; an array of one string is tokenized as the string")
    func promptForms() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let status1 = try await client.post("/v1/completions", #"{"prompt": [1, 50, 60], "max_tokens": 2}"#).status
            #expect(status1 == .ok)
            let status2 = try await client.post("/v1/completions", #"{"prompt": ["Hi"], "max_tokens": 2}"#).status
            #expect(status2 == .ok)
        }
        #expect(service.submitted.map(\.prompt) == [.tokenIDs([1, 50, 60]), .tokenIDs(service.tokenizer.encode("Hi"))])
    }

    @Test("sampling parameters, ignore_eos and stop strings pass through to the engine")
    func parametersPassThrough() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let body = #"""
                {"prompt": "x", "max_tokens": 3, "temperature": 0.5, "top_p": 0.9, "top_k": 7, "seed": 42,
                 "ignore_eos": true, "stop": [" gamma", "END"]}
                """#
            let response = try await client.post("/v1/completions", body)
            #expect(response.status == .ok)
            let choice = try #require(try choices(response.json()).first)
            // Seed 42 starts at word 42 % 4 = 2 (" gamma"), which is a stop string.
            #expect(choice["finish_reason"] as? String == "stop")
            let status3 = try await client.post("/v1/completions", #"{"prompt": "x", "max_tokens": 3, "stop": "END"}"#)
                .status
            #expect(status3 == .ok)
        }
        let first = try #require(service.submitted.first)
        #expect(first.sampling == SamplingParameters(temperature: 0.5, topP: 0.9, topK: 7, seed: 42))
        #expect(first.ignoreEOS)
        #expect(first.stop == [" gamma", "END"])
        #expect(service.submitted.last?.stop == ["END"])
    }

    @Test("n = 2 submits two requests with seeds seed and seed + 1 and returns choices 0 and 1")
    func twoChoices() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post(
                "/v1/completions", #"{"prompt": "x", "max_tokens": 3, "n": 2, "seed": 1}"#)
            #expect(response.status == .ok)
            let json = try response.json()
            let all = try choices(json)
            #expect(all.map { $0["index"] as? Int } == [0, 1])
            #expect(
                all.map { $0["text"] as? String } == [
                    fakeText(maxTokens: 3, offset: 1), fakeText(maxTokens: 3, offset: 2),
                ])
            let usage = try #require(json["usage"] as? [String: Int])
            #expect(usage["completion_tokens"] == 6)
        }
        #expect(service.submitted.map(\.sampling.seed) == [1, 2])
    }

    @Test("completions logprobs = K report tokens, token_logprobs, K top_logprobs and text_offset per token")
    func completionLogprobs() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post("/v1/completions", #"{"prompt": "x", "max_tokens": 3, "logprobs": 2}"#)
            #expect(response.status == .ok)
            let choice = try #require(try choices(response.json()).first)
            let logprobs = try #require(choice["logprobs"] as? [String: Any])
            let tokens = try #require(logprobs["tokens"] as? [String])
            let tokenLogprobs = try #require(logprobs["token_logprobs"] as? [Double])
            let top = try #require(logprobs["top_logprobs"] as? [[String: Double]])
            let offsets = try #require(logprobs["text_offset"] as? [Int])
            #expect(tokens.count == 3 && tokenLogprobs.count == 3 && top.count == 3)
            #expect(top.allSatisfy { $0.count == 2 })
            #expect(tokenLogprobs.allSatisfy { $0 <= 0 })
            let words = FakeGenerationService.words
            #expect(offsets == [0, words[0].count, words[0].count + words[1].count])
        }
        #expect(service.submitted.first?.logprobs == 2)
    }

    @Test("chat logprobs report content entries with token, logprob, bytes and top_logprobs")
    func chatLogprobs() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post(
                "/v1/chat/completions",
                #"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "logprobs": true, "top_logprobs": 3}"#
            )
            #expect(response.status == .ok)
            let choice = try #require(try choices(response.json()).first)
            let logprobs = try #require(choice["logprobs"] as? [String: Any])
            let content = try #require(logprobs["content"] as? [[String: Any]])
            #expect(content.count == 2)
            for entry in content {
                let token = try #require(entry["token"] as? String)
                #expect(entry["logprob"] is Double)
                #expect(entry["bytes"] as? [Int] == token.utf8.map { Int($0) })
                let top = try #require(entry["top_logprobs"] as? [[String: Any]])
                #expect(top.count == 3)
                #expect(top.allSatisfy { $0["token"] is String && $0["logprob"] is Double && $0["bytes"] is [Int] })
            }
        }
    }

    @Test("a chat completion renders the messages with the chat template and answers as the assistant")
    func chatCompletion() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post(
                "/v1/chat/completions",
                #"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "max_completion_tokens": 4}"#
            )
            #expect(response.status == .ok)
            let json = try response.json()
            #expect((json["id"] as? String)?.hasPrefix("chatcmpl-") == true)
            #expect(json["object"] as? String == "chat.completion")
            let choice = try #require(try choices(json).first)
            let message = try #require(choice["message"] as? [String: Any])
            #expect(message["role"] as? String == "assistant")
            #expect(message["content"] as? String == fakeText(maxTokens: 4))
            #expect(choice["finish_reason"] as? String == "length")
        }
        let request = try #require(service.submitted.first)
        // The rendered text's ids, without the special tokens encode() would add (apply_chat_template's rule).
        let rendered = "<|system|>Be brief.\n<|user|>Hi\n<|assistant|>"
        #expect(request.prompt == .tokenIDs(service.tokenizer.encode(rendered, addSpecialTokens: false)))
        #expect(request.maxTokens == 4)
    }

    @Test("a streamed completion sends text chunks, a finishing chunk, then [DONE], as server-sent events")
    func streamedCompletion() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post(
                "/v1/completions", #"{"prompt": "x", "max_tokens": 4, "stream": true}"#)
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/event-stream")
            #expect(response.headers[.cacheControl] == "no-cache")
            let events = try response.events()
            #expect(events.allSatisfy { $0["object"] as? String == "text_completion" })
            #expect(Set(events.compactMap { $0["id"] as? String }).count == 1, "every chunk has the same id")
            let chunkChoices = try events.map { try #require(try choices($0).first) }
            #expect(chunkChoices.compactMap { $0["text"] as? String }.joined() == fakeText(maxTokens: 4))
            #expect(chunkChoices.last?["finish_reason"] as? String == "length")
            #expect(chunkChoices.dropLast().allSatisfy { $0["finish_reason"] is NSNull })
            #expect(events.allSatisfy { $0["usage"] == nil })
        }
    }

    @Test("a streamed chat opens with the role, ends with finish_reason, and include_usage adds a usage chunk")
    func streamedChat() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post(
                "/v1/chat/completions",
                #"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": true, "stream_options": {"include_usage": true}}"#
            )
            #expect(response.status == .ok)
            let events = try response.events()
            #expect(events.allSatisfy { $0["object"] as? String == "chat.completion.chunk" })
            let usageChunk = try #require(events.last)
            #expect(try choices(usageChunk).isEmpty)
            let usage = try #require(usageChunk["usage"] as? [String: Int])
            #expect(usage["completion_tokens"] == 3)
            #expect(usage["total_tokens"] == (usage["prompt_tokens"] ?? 0) + 3)

            let deltas = try events.dropLast().map { try #require(try choices($0).first?["delta"] as? [String: Any]) }
            #expect(deltas.first?["role"] as? String == "assistant")
            #expect(deltas.dropFirst().allSatisfy { $0["role"] == nil })
            #expect(deltas.compactMap { $0["content"] as? String }.joined() == fakeText(maxTokens: 3))
            let finishing = try #require(try choices(events[events.count - 2]).first)
            #expect(finishing["finish_reason"] as? String == "length")
        }
    }

    @Test("a streamed n = 2 request interleaves both choices, each with its own finishing chunk")
    func streamedTwoChoices() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post(
                "/v1/completions", #"{"prompt": "x", "max_tokens": 3, "n": 2, "seed": 0, "stream": true}"#)
            let events = try response.events()
            for index in 0..<2 {
                let mine = try events.map { try #require(try choices($0).first) }.filter {
                    $0["index"] as? Int == index
                }
                #expect(mine.compactMap { $0["text"] as? String }.joined() == fakeText(maxTokens: 3, offset: index))
                #expect(mine.last?["finish_reason"] as? String == "length")
            }
        }
    }

    @Test("a stream that fails mid-way ends with an error event and then [DONE]")
    func streamFailure() async throws {
        let service = FakeGenerationService(failAfterTokens: 2)
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post(
                "/v1/completions", #"{"prompt": "x", "max_tokens": 5, "stream": true}"#)
            #expect(response.status == .ok)
            let events = try response.events()
            let error = try #require(events.last?["error"] as? [String: Any])
            #expect((error["message"] as? String)?.contains("worker w1 timed out") == true)
            #expect(events.dropLast().count == 2, "the two tokens before the failure were sent")
        }
    }

    @Test("a request that fails without streaming answers 500 in the error envelope")
    func wholeFailure() async throws {
        let service = FakeGenerationService(failAfterTokens: 1)
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post("/v1/completions", #"{"prompt": "x", "max_tokens": 5}"#)
            #expect(response.status == .internalServerError)
            #expect((try response.errorObject()["message"] as? String)?.contains("worker w1") == true)
        }
    }
}
