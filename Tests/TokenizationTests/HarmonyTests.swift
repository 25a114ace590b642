// gpt-oss's harmony format: the chat template as released, chat_template_kwargs as JSON values, the
// trained tokenizer of gpt-oss's shape, and the split of a completion into reasoning and content.
import Foundation
import TestSupport
import Testing
import Tokenization

/// A harmony completion and how a chat response reports it.
struct HarmonyCompletion: Sendable, CustomTestStringConvertible {
    let completion: String
    /// `reasoning_content`; nil when no reasoning message was opened.
    let reasoning: String?
    /// `content`; nil when no answer was opened.
    let content: String?
    var testDescription: String { completion }

    static let all = [
        HarmonyCompletion(
            completion:
                "<|channel|>analysis<|message|>Let me think.<|end|><|start|>assistant<|channel|>final<|message|>It is 4.<|return|>",
            reasoning: "Let me think.", content: "It is 4."),
        HarmonyCompletion(completion: "<|channel|>final<|message|>Hi there<|return|>", reasoning: nil, content: "Hi there"),
        HarmonyCompletion(
            completion:
                "<|channel|>analysis<|message|>First.<|end|><|start|>assistant<|channel|>analysis<|message|>Second.<|end|>"
                + "<|start|>assistant<|channel|>final<|message|>Done.<|return|>",
            reasoning: "First.\nSecond.", content: "Done."),
        HarmonyCompletion(
            completion: "<|channel|>analysis<|message|>cut off mid-thou", reasoning: "cut off mid-thou", content: nil),
        HarmonyCompletion(
            completion:
                "<|channel|>commentary<|message|>Checking the weather.<|end|><|start|>assistant to=functions.get_weather"
                + "<|channel|>commentary <|constrain|>json<|message|>{\"city\": \"Paris\"}<|call|>",
            reasoning: "{\"city\": \"Paris\"}", content: "Checking the weather."),
        HarmonyCompletion(
            completion: "<|channel|>analysis<|message|>日本語 🦜 café<|end|><|start|>assistant<|channel|>final<|message|>Ünïcødé 👩‍💻<|return|>",
            reasoning: "日本語 🦜 café", content: "Ünïcødé 👩‍💻"),
        HarmonyCompletion(completion: "not harmony at all", reasoning: nil, content: nil),
    ]
}

@Suite("Harmony (gpt-oss)")
struct HarmonyTests {
    static func fixtureTokenizer() throws -> Tokenizer {
        try ReferenceFixture.o200kHarmony.loadTokenizer(chatTemplate: HarmonyChatTemplate.source)
    }

    @Test("the embedded chat template is the released one, whose transformers renderings the fixture recorded")
    func templateIsTheRecordedOne() throws {
        let fixture = try ChatTemplateFixture.load("gpt-oss")
        #expect(fixture.template == HarmonyChatTemplate.source)
        #expect(HarmonyChatTemplate.source.utf8.count == 16738, "the size of openai/gpt-oss-20b's chat_template.jinja")
        #expect(HarmonyChatTemplate.source.hasPrefix("{#-\n  In addition to the normal inputs of `messages` and `tools`"))
        #expect(HarmonyChatTemplate.source.hasSuffix("<|start|>assistant\n{%- endif -%}"))
        let efforts = fixture.cases.compactMap { $0.chatTemplateKwargs?["reasoning_effort"] }
        #expect(efforts.contains(.string("high")) && efforts.contains(.string("low")))
        #expect(fixture.cases.contains { $0.chatTemplateKwargs?["builtin_tools"] != nil })
        #expect(fixture.cases.contains { $0.messages.contains { $0["role"] == "system" } })
        #expect(fixture.cases.contains { $0.messages.count >= 4 && $0.rendered != nil })
    }

    @Test("a completion's text splits by channel, one token at a time", arguments: HarmonyCompletion.all)
    func channels(_ expected: HarmonyCompletion) throws {
        let tokenizer = try Self.fixtureTokenizer()
        let tokens = try #require(tokenizer.harmonyTokens)
        let ids = tokenizer.encode(expected.completion, addSpecialTokens: false)
        // The engine's text per token: special tokens skipped, incomplete characters held back.
        var decoder = tokenizer.makeStreamingDecoder(skipSpecialTokens: true)
        var channels = HarmonyChannels(tokens: tokens)
        var reasoning = ""
        var content = ""
        for id in ids {
            let delta = channels.append(tokenID: id, text: decoder.append(id))
            reasoning += delta.reasoning
            content += delta.content
        }
        let last = channels.finish(trailingText: decoder.finish())
        reasoning += last.reasoning
        content += last.content
        #expect((channels.hasReasoning ? reasoning : nil) == expected.reasoning)
        #expect((channels.hasContent ? content : nil) == expected.content)
    }

    @Test("harmony tokens are found only in a vocabulary with gpt-oss's special tokens")
    func harmonyTokens() throws {
        let tokenizer = try Self.fixtureTokenizer()
        let tokens = try #require(tokenizer.harmonyTokens)
        #expect(tokens.start == tokenizer.tokenID(for: "<|start|>"))
        #expect(tokens.channel == tokenizer.tokenID(for: "<|channel|>"))
        #expect(tokens.turnEnds == Set([tokenizer.tokenID(for: "<|return|>"), tokenizer.tokenID(for: "<|call|>")].compactMap { $0 }))
        #expect(try ReferenceFixture.qwen2ByteLevel.loadTokenizer().harmonyTokens == nil)
        #expect(try ReferenceFixture.switchyardTrained.loadTokenizer().harmonyTokens == nil)
    }

    @Test("chat_template_kwargs become the Python values transformers would pass: int, float, bool, None, lists, dicts")
    func argumentValues() throws {
        let template = try ChatTemplate(
            "{{ n }} {{ n is integer }} {{ f }} {{ f is float }} {{ b }} {{ z is none }} {{ s }} {{ l | tojson }} "
                + "{{ d | tojson }} {{ d.b.c }} {{ enable_thinking is false }}")
        let arguments = try ChatTemplateArguments([
            "n": .number(3), "f": .number(2.5), "b": .bool(false), "z": .null, "s": .string("x"),
            "l": .array([.number(1), .string("a"), .bool(true)]),
            "d": .object(["b": .object(["c": .number(7)]), "a": .number(1)]), "enable_thinking": .bool(false),
        ])
        let rendered = try template.render(messages: [], addGenerationPrompt: false, arguments: arguments)
        #expect(rendered == #"3 True 2.5 True False True x [1, "a", true] {"a": 1, "b": {"c": 7}} 7 True"#)
    }

    @Test(
        "a chat_template_kwargs name the template's own context holds is refused by name",
        arguments: ["messages", "add_generation_prompt", "tools", "documents", "bos_token", "eos_token", "raise_exception",
                    "strftime_now", "namespace", "custom_token"])
    func reservedNames(name: String) {
        #expect {
            _ = try ChatTemplateArguments(["reasoning_effort": .string("low"), name: .null], specialTokenNames: ["custom_token"])
        } throws: { error in
            (error as? ChatTemplateArgumentError)?.name == name && "\(error)".contains("cannot be replaced")
        }
    }
}

@Suite("TokenizerTrainer: gpt-oss's shape")
struct HarmonyTokenizerTrainerTests {
    static let fixtureVocabularySize = 400

    @Test("the vocabulary has the requested size, the harmony special tokens last in gpt-oss's order", arguments: [300, 400, 2000])
    func layout(size: Int) throws {
        let files = try TokenizerTrainer.harmonyBPE(vocabularySize: size)
        let tokenizer = try Tokenizer(tokenizerJSON: files.tokenizerJSON, tokenizerConfigJSON: files.tokenizerConfigJSON)
        #expect(tokenizer.vocabularySize == size)
        let first = size - TokenizerTrainer.harmonySpecialTokens.count
        for (offset, token) in TokenizerTrainer.harmonySpecialTokens.enumerated() {
            #expect(tokenizer.tokenID(for: token) == Int32(first + offset), "\(token)")
            #expect(tokenizer.isSpecialToken(token))
        }
        // gpt-oss: <|startoftext|> 199998, <|endoftext|> 199999, <|return|> 200002, <|call|> 200012.
        #expect([files.startOfTextID, files.endOfTextID, files.returnID, files.callID] == [0, 1, 4, 14].map { first + $0 })
        #expect(tokenizer.bosTokenID == Int32(files.startOfTextID))
        #expect(tokenizer.eosTokenID == Int32(files.returnID))
        #expect(tokenizer.harmonyTokens != nil)
        #expect(tokenizer.tokenID(for: "Ġ") == 32, "the bytes come first, as ByteLevel's stand-ins")
    }

    @Test("training is deterministic, and the pipeline is the one transformers writes for gpt-oss")
    func deterministicAndShaped() throws {
        let first = try TokenizerTrainer.harmonyBPE(vocabularySize: 400)
        let second = try TokenizerTrainer.harmonyBPE(vocabularySize: 400)
        #expect(first.tokenizerJSON == second.tokenizerJSON && first.tokenizerConfigJSON == second.tokenizerConfigJSON)
        func object(_ data: Data) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        }
        let trained = try object(first.tokenizerJSON)
        let reference = try object(
            Data(contentsOf: ReferenceFixture.o200kHarmony.directory.appendingPathComponent("tokenizer.json")))
        /// A JSON value's text with sorted keys, to compare parsed values.
        func canonical(_ value: Any?) throws -> String {
            let data = try JSONSerialization.data(withJSONObject: value ?? NSNull(), options: [.sortedKeys, .fragmentsAllowed])
            return String(decoding: data, as: UTF8.self)
        }
        for field in ["pre_tokenizer", "decoder", "post_processor", "normalizer"] {
            #expect(
                try canonical(trained[field]) == canonical(reference[field]),
                "\(field) differs from the tokenizers library's o200k-harmony fixture")
        }
        let model = try #require(trained["model"] as? [String: Any])
        let referenceModel = try #require(reference["model"] as? [String: Any])
        for flag in ["type", "ignore_merges", "byte_fallback", "fuse_unk", "unk_token"] {
            #expect(try canonical(model[flag]) == canonical(referenceModel[flag]), "model.\(flag)")
        }
    }

    @Test(
        "encode then decode gives the text back, special tokens included",
        arguments: [
            "Hello, world!", "I'M SURE it's fine, WE'VE done 1234567 things.", "tabs\tand\nnewlines\r\n  ",
            "日本語のテキスト 👩‍💻 Café", "<|start|>assistant<|channel|>final<|message|>Hi<|return|>", "",
        ])
    func roundTrip(text: String) throws {
        let files = try TokenizerTrainer.harmonyBPE(vocabularySize: Self.fixtureVocabularySize)
        let tokenizer = try Tokenizer(tokenizerJSON: files.tokenizerJSON, tokenizerConfigJSON: files.tokenizerConfigJSON)
        let ids = tokenizer.encode(text)
        #expect(tokenizer.decode(ids).utf8.elementsEqual(text.utf8))
    }

    @Test("a vocabulary too small for the byte and harmony tokens is rejected with the limits")
    func tooSmall() {
        #expect {
            _ = try TokenizerTrainer.harmonyBPE(vocabularySize: 200)
        } throws: { error in
            "\(error)".contains("vocabularySize is 200, but must be between 300")
        }
    }

    /// As the switchyard-trained fixture: on a mismatch the trainer's output is written to a temporary
    /// directory to be reviewed and copied over; then Scripts/reference/tokenizer_fixtures.py records
    /// Hugging Face's encodings of it.
    @Test("the committed switchyard-harmony fixture is what the trainer produces")
    func committedFixtureIsCurrent() throws {
        let files = try TokenizerTrainer.harmonyBPE(vocabularySize: Self.fixtureVocabularySize)
        let directory = ReferenceFixture.switchyardHarmony.directory
        let produced = [("tokenizer.json", files.tokenizerJSON), ("tokenizer_config.json", files.tokenizerConfigJSON)]
        let stale = produced.filter { name, data in
            (try? Data(contentsOf: directory.appendingPathComponent(name))) != data
        }
        if !stale.isEmpty {
            let output = try TestPaths.makeTemporaryDirectory("switchyard-harmony")
            for (name, data) in produced { try data.write(to: output.appendingPathComponent(name)) }
            Issue.record(
                Comment(
                    rawValue: "\(stale.map(\.0).joined(separator: ", ")) differ from the trainer's output, written to "
                        + "\(output.path); if intended: cp \(output.path)/* \(directory.path)/ and rerun "
                        + "Scripts/reference/tokenizer_fixtures.py"))
        }
    }
}
