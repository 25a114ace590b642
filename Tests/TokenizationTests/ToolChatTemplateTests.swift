// Tool calling in chat templates: JSON read as Python's json.loads reads it (member order, ints
// apart from floats) and printed back as json.dumps, and Qwen3's real template rendering tools,
// assistant tool calls and tool results exactly as transformers does (fixture written by
// Scripts/reference/chat_template_fixtures.py, with the ids of a fixture checkpoint's tokenizer).
import Foundation
import TestSupport
import Testing
import Tokenization

/// Tests/Fixtures/tool_chats/qwen3.json, read with member order kept.
struct ToolChatFixture: Sendable {
    struct Case: Sendable {
        let tools: [OrderedJSON]
        /// As vLLM hands them to the template (arguments as objects).
        let messages: [OrderedJSON]
        /// As an OpenAI client sends them (arguments as JSON text), the whole array's JSON.
        let requestMessages: OrderedJSON
        let addGenerationPrompt: Bool
        let rendered: String
        let promptIDs: [Int32]
    }

    let template: String
    /// The checkpoint directory whose tokenizer made `promptIDs`.
    let tokenizerDirectory: URL
    let cases: [Case]

    static let qwen3: ToolChatFixture = {
        do {
            return try load("qwen3")
        } catch {
            preconditionFailure("Tests/Fixtures/tool_chats/qwen3.json: \(error)")
        }
    }()

    static func load(_ name: String) throws -> ToolChatFixture {
        let url = TestPaths.fixtures.appendingPathComponent("tool_chats/\(name).json")
        let root = try OrderedJSON.parse(Array(try Data(contentsOf: url)))
        guard case .string(let template)? = root["template"], case .string(let directory)? = root["tokenizer"],
            case .array(let cases)? = root["cases"]
        else { throw CocoaError(.fileReadCorruptFile) }
        return ToolChatFixture(
            template: template, tokenizerDirectory: TestPaths.packageRoot.appendingPathComponent(directory),
            cases: try cases.map { entry in
                guard case .array(let tools)? = entry["tools"], case .array(let messages)? = entry["messages"],
                    let request = entry["request_messages"], case .bool(let prompt)? = entry["add_generation_prompt"],
                    case .string(let rendered)? = entry["rendered"], case .array(let ids)? = entry["prompt_ids"]
                else { throw CocoaError(.fileReadCorruptFile) }
                return Case(
                    tools: tools, messages: messages, requestMessages: request, addGenerationPrompt: prompt,
                    rendered: rendered,
                    promptIDs: ids.compactMap { if case .integer(let id) = $0 { Int32(id) } else { nil } })
            })
    }

    /// The fixture checkpoint's tokenizer with the fixture's template.
    func tokenizer() throws -> Tokenizer {
        try Tokenizer(
            tokenizerJSON: Data(contentsOf: tokenizerDirectory.appendingPathComponent("tokenizer.json")),
            tokenizerConfigJSON: Data(contentsOf: tokenizerDirectory.appendingPathComponent("tokenizer_config.json")),
            chatTemplateJinja: template)
    }
}

@Suite("Tool calling in chat templates")
struct ToolChatTemplateTests {
    @Test("JSON members keep their order, integers stay integers, and json.dumps form comes back")
    func orderedJSON() throws {
        let text = #"{"z": 1, "a": [1.0, -0, 2.5e3, true, null], "m": {"é": "\u00e9\ud83d\ude00\n\"q\""}, "z": 3}"#
        let value = try OrderedJSON.parse(text)
        guard case .object(let members) = value else {
            Issue.record("not an object: \(value)")
            return
        }
        #expect(members.map(\.key) == ["z", "a", "m"], "a repeated key keeps its first place")
        #expect(value["z"] == .integer(3), "and its last value")
        #expect(value["a"] == .array([.float(1), .integer(0), .float(2500), .bool(true), .null]))
        // Python: json.dumps(json.loads(text), ensure_ascii=False)
        #expect(value.pythonJSON == #"{"z": 3, "a": [1.0, 0, 2500.0, true, null], "m": {"é": "é😀\n\"q\""}}"#)
    }

    @Test(
        "malformed JSON is refused with the place, never trapped on",
        arguments: [
            "", "{", "[1,]", #"{"a" 1}"#, "01", "1.", "-", #""\ud800""#, #""\x""#, "tru", "[1] 2", "\"a\u{01}\"",
            String(repeating: "[", count: 300) + String(repeating: "]", count: 300),
        ])
    func refusesMalformed(_ text: String) {
        #expect(throws: OrderedJSONError.self) { try OrderedJSON.parse(text) }
    }

    @Test("Qwen3's template renders tools, tool calls and tool results exactly as transformers does")
    func rendersLikeTransformers() throws {
        let fixture = ToolChatFixture.qwen3
        #expect(fixture.cases.count >= 8)
        let template = try ChatTemplate(fixture.template)
        for (index, recorded) in fixture.cases.enumerated() {
            let rendered = try template.render(
                conversation: recorded.messages, tools: recorded.tools, addGenerationPrompt: recorded.addGenerationPrompt,
                specialTokens: ["eos_token": "<|im_end|>"])
            #expect(rendered == recorded.rendered, "case \(index)")
        }
    }

    @Test("the rendered tool conversation encodes to transformers' apply_chat_template ids")
    func idsLikeTransformers() throws {
        let fixture = ToolChatFixture.qwen3
        let tokenizer = try fixture.tokenizer()
        #expect(tokenizer.chatTemplateWritesToolCallTags)
        for (index, recorded) in fixture.cases.enumerated() {
            let rendered = try tokenizer.applyChatTemplate(
                conversation: recorded.messages, tools: recorded.tools, addGenerationPrompt: recorded.addGenerationPrompt)
            #expect(tokenizer.encodeChatPrompt(rendered) == recorded.promptIDs, "case \(index)")
        }
    }

    @Test("only a template that writes <tool_call> tags is one whose tool calls are parsed")
    func toolCallTags() throws {
        let files = try TokenizerTrainer.sentencePieceBPE(vocabularySize: 400)
        func tokenizer(_ template: String?) throws -> Tokenizer {
            try Tokenizer(tokenizerJSON: files.tokenizerJSON, tokenizerConfigJSON: files.tokenizerConfigJSON, chatTemplateJinja: template)
        }
        #expect(try tokenizer(ToolChatFixture.qwen3.template).chatTemplateWritesToolCallTags)
        #expect(try !tokenizer("{% for m in messages %}{{ m.content }}{% endfor %}").chatTemplateWritesToolCallTags)
    }
}
