// The tokenizers and chat templates of the model fixtures (Tests/Fixtures/models/*/reference.json,
// Scripts/reference/model_fixtures.py) against what transformers recorded for them: Qwen's
// byte-level BPE with its added tokens and ChatML, OLMoE's GPT-NeoX-style BPE and its template.
import Foundation
import TestSupport
import Testing
import Tokenization

/// One model fixture's recorded prompts, chat conversations and decodes.
struct ModelTokenizerReference: Sendable, CustomTestStringConvertible {
    struct Case: Sendable {
        let text: String
        let ids: [Int32]
    }
    struct ChatCase: Sendable {
        let messages: [[String: String]]
        let addGenerationPrompt: Bool
        let text: String
        let ids: [Int32]
    }
    struct DecodeCase: Sendable {
        let what: String
        let ids: [Int32]
        let decoded: String
        let decodedSkippingSpecialTokens: String
    }

    let name: String
    let directory: URL
    let prompts: [Case]
    let chats: [ChatCase]
    let decodes: [DecodeCase]

    var testDescription: String { name }

    /// Every model fixture whose reference.json records chat cases (the Qwen and OLMoE ones).
    static let all: [ModelTokenizerReference] = {
        let root = TestPaths.fixtures.appendingPathComponent("models")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.sorted().compactMap { name -> ModelTokenizerReference? in
            let directory = root.appendingPathComponent(name)
            guard let data = try? Data(contentsOf: directory.appendingPathComponent("reference.json")),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let chats = object["chat_cases"] as? [[String: Any]]
            else { return nil }
            func ids(_ value: Any?) -> [Int32] { (value as? [Int] ?? []).map(Int32.init) }
            return ModelTokenizerReference(
                name: name, directory: directory,
                prompts: (object["cases"] as? [[String: Any]] ?? []).map {
                    Case(text: $0["prompt"] as? String ?? "", ids: ids($0["prompt_token_ids"]))
                },
                chats: chats.map {
                    ChatCase(
                        messages: $0["messages"] as? [[String: String]] ?? [],
                        addGenerationPrompt: $0["add_generation_prompt"] as? Bool ?? false,
                        text: $0["text"] as? String ?? "", ids: ids($0["ids"]))
                },
                decodes: (object["decode_cases"] as? [[String: Any]] ?? []).map {
                    DecodeCase(
                        what: $0["what"] as? String ?? "", ids: ids($0["ids"]), decoded: $0["decoded"] as? String ?? "",
                        decodedSkippingSpecialTokens: $0["decoded_skipping_special_tokens"] as? String ?? "")
                })
        }
    }()
}

@Suite("Model fixtures' tokenizers and chat templates equal transformers")
struct ModelTokenizerTests {
    @Test("the Qwen3-MoE, Qwen2-MoE, OLMoE, GLM-4.5 and DeepSeek-V3 fixtures record chat cases")
    func fixturesPresent() {
        let names = ModelTokenizerReference.all.map(\.name)
        for prefix in ["qwen3_moe", "qwen2_moe", "olmoe", "glm4_moe", "deepseek_v3"] {
            #expect(names.contains { $0.hasPrefix(prefix) }, "no \(prefix) fixture with chat_cases in \(names)")
        }
    }

    @Test(
        "prompt ids, apply_chat_template text and ids, and decode (invalid UTF-8 included) equal transformers",
        arguments: ModelTokenizerReference.all)
    func matchesTransformers(reference: ModelTokenizerReference) throws {
        let tokenizer = try Tokenizer(directory: reference.directory)
        for prompt in reference.prompts {
            #expect(tokenizer.encode(prompt.text) == prompt.ids, "prompt \(prompt.text.debugDescription)")
        }
        #expect(!reference.chats.isEmpty)
        for chat in reference.chats {
            let text = try tokenizer.applyChatTemplate(chat.messages, addGenerationPrompt: chat.addGenerationPrompt)
            #expect(text == chat.text)
            let ids = try tokenizer.applyChatTemplateTokenIDs(chat.messages, addGenerationPrompt: chat.addGenerationPrompt)
            #expect(ids == chat.ids, "chat of \(chat.messages.count) messages")
        }
        for decode in reference.decodes {
            #expect(tokenizer.decode(decode.ids) == decode.decoded, "\(decode.what)")
            #expect(tokenizer.decode(decode.ids, skipSpecialTokens: true) == decode.decodedSkippingSpecialTokens, "\(decode.what)")
        }
    }
}
