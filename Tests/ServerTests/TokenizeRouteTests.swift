// /tokenize and /detokenize: vLLM's request and response shapes over the service's tokenizer.
import Coordinator
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import Tokenization

@Suite("Tokenize routes")
struct TokenizeRouteTests {
    @Test("/tokenize of a prompt answers count, max_model_len, tokens; /detokenize gives the text back")
    func promptRoundTrip() async throws {
        let service = FakeGenerationService(contextLength: 128)
        let expected = service.tokenizer.encode("Hello there", addSpecialTokens: true)
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post("/tokenize", #"{"prompt": "Hello there", "return_token_strs": true}"#)
            #expect(response.status == .ok, "\(response.text)")
            let json = try response.json()
            #expect(json["tokens"] as? [Int] == expected.map(Int.init))
            #expect(json["count"] as? Int == expected.count)
            #expect(json["max_model_len"] as? Int == 128)
            #expect((json["token_strs"] as? [String])?.count == expected.count)
            let plain = try await client.post("/tokenize", #"{"prompt": "Hello there", "add_special_tokens": false}"#)
            #expect(try plain.json()["tokens"] as? [Int] == service.tokenizer.encode("Hello there", addSpecialTokens: false).map(Int.init))
            #expect(try plain.json()["token_strs"] is NSNull)
            let ids = expected.map(String.init).joined(separator: ", ")
            let back = try await client.post("/detokenize", "{\"tokens\": [\(ids)]}")
            #expect(try back.json()["prompt"] as? String == service.tokenizer.decode(expected))
        }
    }

    @Test("/tokenize of messages renders the chat template, with the generation prompt unless asked not to")
    func chat() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let messages = #""messages": [{"role": "user", "content": "hi"}]"#
            let withPrompt = try await client.post("/tokenize", "{\(messages)}")
            let rendered = try service.applyChatTemplate([.init(role: "user", content: "hi")], addGenerationPrompt: true)
            #expect(try withPrompt.json()["tokens"] as? [Int] == service.tokenizer.encodeChatPrompt(rendered).map(Int.init))
            let without = try await client.post("/tokenize", "{\(messages), \"add_generation_prompt\": false}")
            let bare = try service.applyChatTemplate([.init(role: "user", content: "hi")], addGenerationPrompt: false)
            #expect(try without.json()["tokens"] as? [Int] == service.tokenizer.encodeChatPrompt(bare).map(Int.init))
        }
    }

    @Test("/tokenize of messages passes chat_template_kwargs to the template as JSON values")
    func chatTemplateKwargs() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post(
                "/tokenize",
                #"{"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"enable_thinking": false, "effort": {"level": 2}}}"#
            )
            #expect(response.status == .ok, "\(response.text)")
            let arguments = try ChatTemplateArguments([
                "enable_thinking": .bool(false), "effort": .object(["level": .number(2)]),
            ])
            let rendered = try service.applyChatTemplate(
                [.init(role: "user", content: "hi")], addGenerationPrompt: true, arguments: arguments)
            #expect(rendered.contains("<|effort|>{\"level\":2}\n<|enable_thinking|>false\n"))
            #expect(try response.json()["tokens"] as? [Int] == service.tokenizer.encodeChatPrompt(rendered).map(Int.init))
        }
    }

    @Test(
        "bad /tokenize and /detokenize bodies are refused naming the field",
        arguments: [
            ("/tokenize", #"{}"#, "prompt"), ("/tokenize", #"{"prompt": 3}"#, "prompt"),
            ("/tokenize", #"{"messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": [1]}"#, "chat_template_kwargs"),
            (
                "/tokenize", #"{"messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": {"add_generation_prompt": false}}"#,
                "chat_template_kwargs.add_generation_prompt"
            ),
            (
                "/tokenize", #"{"messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": {"bos_token": "<x>"}}"#,
                "chat_template_kwargs.bos_token"
            ),
            ("/tokenize", #"{"messages": [{"role": "user", "content": "x"}], "continue_final_message": true}"#, "continue_final_message"),
            ("/detokenize", #"{}"#, "tokens"), ("/detokenize", #"{"tokens": [1, "a"]}"#, "tokens"),
            ("/detokenize", #"{"tokens": [99999999]}"#, "tokens"),
        ])
    func refusals(_ path: String, _ body: String, _ param: String) async throws {
        try await makeTestApplication(FakeGenerationService()).test(.router) { client in
            let response = try await client.post(path, body)
            #expect(response.status == .badRequest, "\(response.text)")
            #expect(try response.errorObject()["param"] as? String == param)
        }
    }
}
