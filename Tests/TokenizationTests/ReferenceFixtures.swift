// Loads the Hugging Face reference fixtures written by Scripts/reference/tokenizer_fixtures.py.
import Foundation
import TestSupport
import Testing
import Tokenization

/// One recorded case: what transformers 5 `AutoTokenizer` produced for `text`.
struct ReferenceCase: Decodable, Sendable, CustomTestStringConvertible {
    let text: String
    let ids: [Int32]
    let idsWithoutSpecialTokens: [Int32]
    let decoded: String
    let decodedSkippingSpecialTokens: String

    enum CodingKeys: String, CodingKey {
        case text, ids, decoded
        case idsWithoutSpecialTokens = "ids_without_special_tokens"
        case decodedSkippingSpecialTokens = "decoded_skipping_special_tokens"
    }

    var testDescription: String { text.debugDescription }
}

/// A fixture directory's cases.json.
struct ReferenceRecord: Decodable, Sendable {
    let vocabularySize: Int
    let bosTokenID: Int32?
    let eosTokenID: Int32?
    let cases: [ReferenceCase]

    enum CodingKeys: String, CodingKey {
        case cases
        case vocabularySize = "vocabulary_size"
        case bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id"
    }
}

/// The committed reference tokenizers, by directory name under Tests/Fixtures/tokenizers.
enum ReferenceFixture: String, CaseIterable, Sendable {
    case sentencePieceMetaspace = "sp-metaspace"
    case sentencePieceLegacy = "sp-legacy"
    case mixtralLlamaClass = "mixtral-llama-class"
    case qwen2ByteLevel = "qwen2-bytelevel"
    case gpt2ByteLevel = "gpt2-bytelevel"
    case edgeSplitDigits = "edge-split-digits"
    case edgeMetaspaceFirst = "edge-metaspace-first"
    case llama3ByteLevel = "llama3-bytelevel"
    case llamaClassDefault = "llama-class-default"
    case switchyardTrained = "switchyard-trained"
    /// gpt-oss's tokenizer.json shape (o200k regex, byte-level BPE, harmony special tokens last), trained small.
    case o200kHarmony = "o200k-harmony"
    /// TokenizerTrainer.harmonyBPE's tokenizer (make-model --arch gpt_oss), recorded by Hugging Face.
    case switchyardHarmony = "switchyard-harmony"

    var directory: URL { TestPaths.fixtures.appendingPathComponent("tokenizers").appendingPathComponent(rawValue) }

    func loadTokenizer() throws -> Tokenizer { try Tokenizer(directory: directory) }

    func loadRecord() throws -> ReferenceRecord {
        let data = try Data(contentsOf: directory.appendingPathComponent("cases.json"))
        return try JSONDecoder().decode(ReferenceRecord.self, from: data)
    }
}

/// The first index where two id lists differ, described for a failure message.
func firstMismatch(_ actual: [Int32], _ expected: [Int32]) -> String? {
    guard actual != expected else { return nil }
    let index =
        zip(actual, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        ?? min(actual.count, expected.count)
    return "first mismatch at index \(index): got \(actual), expected \(expected)"
}

/// One recorded decode-only case (decode_cases.json, `tokenizer_fixtures.py --extra-cases`): tokens
/// chosen by hand (byte tokens whose runs are not valid UTF-8 among them) and transformers' `decode`.
struct DecodeCase: Decodable, Sendable, CustomTestStringConvertible {
    let tokens: [String]
    let ids: [Int32]
    let decoded: String
    let decodedSkippingSpecialTokens: String

    enum CodingKeys: String, CodingKey {
        case tokens, ids, decoded
        case decodedSkippingSpecialTokens = "decoded_skipping_special_tokens"
    }

    var testDescription: String { tokens.debugDescription }
}

/// Conversations rendered and tokenized by transformers' `apply_chat_template` with a chat template
/// from Tests/Fixtures/chat_templates (chat_cases.json, `tokenizer_fixtures.py --extra-cases`).
struct ChatRecord: Decodable, Sendable {
    struct Case: Decodable, Sendable {
        let messages: [[String: String]]
        let addGenerationPrompt: Bool
        /// apply_chat_template's keyword arguments (a request's `chat_template_kwargs`), when any.
        let chatTemplateKwargs: [String: JSONValue]?
        /// `apply_chat_template(..., tokenize=False)`.
        let rendered: String
        /// `apply_chat_template(..., tokenize=True)["input_ids"]`.
        let ids: [Int32]

        enum CodingKeys: String, CodingKey {
            case messages, rendered, ids
            case addGenerationPrompt = "add_generation_prompt"
            case chatTemplateKwargs = "chat_template_kwargs"
        }

        var arguments: ChatTemplateArguments {
            get throws { try ChatTemplateArguments(chatTemplateKwargs ?? [:]) }
        }
    }

    /// The template's fixture name under Tests/Fixtures/chat_templates.
    let chatTemplate: String
    let template: String
    /// The local time strftime_now reported (templates that print the date), ISO 8601 without a zone.
    let now: String?
    let cases: [Case]

    enum CodingKeys: String, CodingKey {
        case template, cases, now
        case chatTemplate = "chat_template"
    }

    /// `now` as a date, or the present.
    var renderDate: Date { now.map(localDate) ?? Date() }
}

extension ReferenceFixture {
    /// The fixtures that have a chat_cases.json.
    static let withChatCases: [ReferenceFixture] = [
        .mixtralLlamaClass, .llamaClassDefault, .sentencePieceLegacy, .llama3ByteLevel, .qwen2ByteLevel, .o200kHarmony,
        .switchyardHarmony,
    ]

    func loadDecodeCases() throws -> [DecodeCase] {
        struct Record: Decodable { let cases: [DecodeCase] }
        let data = try Data(contentsOf: directory.appendingPathComponent("decode_cases.json"))
        return try JSONDecoder().decode(Record.self, from: data).cases
    }

    func loadChatRecord() throws -> ChatRecord {
        let data = try Data(contentsOf: directory.appendingPathComponent("chat_cases.json"))
        return try JSONDecoder().decode(ChatRecord.self, from: data)
    }

    /// The fixture's tokenizer with `chatTemplate` as its chat_template.jinja.
    func loadTokenizer(chatTemplate: String) throws -> Tokenizer {
        let configURL = directory.appendingPathComponent("tokenizer_config.json")
        return try Tokenizer(
            tokenizerJSON: try Data(contentsOf: directory.appendingPathComponent("tokenizer.json")),
            tokenizerConfigJSON: FileManager.default.fileExists(atPath: configURL.path)
                ? try Data(contentsOf: configURL) : nil,
            chatTemplateJinja: chatTemplate)
    }
}
