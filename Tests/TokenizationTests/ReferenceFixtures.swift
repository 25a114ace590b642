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
