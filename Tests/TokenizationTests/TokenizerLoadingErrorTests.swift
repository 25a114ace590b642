// Malformed or unsupported tokenizer.json: typed errors that name the file, the field and what is valid.
import Foundation
import Testing
import Tokenization

@Suite("Loading errors")
struct TokenizerLoadingErrorTests {
    static let validModel = #""model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}"#

    struct BadFile: Sendable, CustomTestStringConvertible {
        let json: String
        let expected: String
        var testDescription: String { expected }
    }

    static let badFiles: [BadFile] = [
        BadFile(json: "{not json", expected: "tokenizer.json: is not valid JSON"),
        BadFile(json: "[1, 2]", expected: "tokenizer.json: is an array, but must be an object"),
        BadFile(
            json: #"{"model": {"type": "WordPiece", "vocab": {}}}"#,
            expected: #"tokenizer.json: model.type is "WordPiece", but only "BPE" is supported"#),
        BadFile(json: #"{"model": {"vocab": {}}}"#, expected: "tokenizer.json: model.type is missing"),
        BadFile(
            json: #"{"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}}"#,
            expected: "tokenizer.json: model.vocab.a is a string, but must be an integer"),
        BadFile(
            json: #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a c"]}}"#,
            expected: #"tokenizer.json: model.merges[0] merges "a" and "c", but both must be in model.vocab"#),
        BadFile(
            json: #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]}}"#,
            expected: "tokenizer.json: model.merges[0] must name exactly two tokens"),
        BadFile(
            json: #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<unk>"}}"#,
            expected: #"tokenizer.json: model.unk_token is "<unk>", which is not in model.vocab"#),
        BadFile(
            json: #"{"normalizer": {"type": "BertNormalizer"}, \#(validModel)}"#,
            expected: #"tokenizer.json: normalizer.type is "BertNormalizer", but only "NFC", "NFD", "NFKC""#),
        BadFile(
            json:
                #"{"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits"}, {"type": "Punctuation"}]}, \#(validModel)}"#,
            expected: #"tokenizer.json: pre_tokenizer.pretokenizers[1].type is "Punctuation", but only "Metaspace""#),
        BadFile(
            json:
                #"{"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Sideways"}, \#(validModel)}"#,
            expected: #"tokenizer.json: pre_tokenizer.behavior is "Sideways", but must be one of "Removed", "Isolated""#
        ),
        BadFile(
            json:
                #"{"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"}, \#(validModel)}"#,
            expected:
                "tokenizer.json: pre_tokenizer.pattern.Regex is not a regular expression this platform can compile"),
        BadFile(
            json: #"{"decoder": {"type": "WordPiece"}, \#(validModel)}"#,
            expected: #"tokenizer.json: decoder.type is "WordPiece", but only "Metaspace""#),
        BadFile(
            json:
                #"{"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}], "special_tokens": {}}, \#(validModel)}"#,
            expected:
                #"tokenizer.json: post_processor.single[0].SpecialToken.id is "<s>", but it is not listed in post_processor.special_tokens"#
        ),
        BadFile(
            json: #"{"added_tokens": [{"id": -4, "content": "<s>"}], \#(validModel)}"#,
            expected: "tokenizer.json: added_tokens[0].id is -4, but must be a token id"),
    ]

    @Test("a malformed tokenizer.json throws an error naming the field", arguments: badFiles)
    func malformed(file: BadFile) {
        #expect {
            _ = try Tokenizer(tokenizerJSON: Data(file.json.utf8), tokenizerConfigJSON: nil)
        } throws: { error in
            (error as? TokenizerError).map { "\($0)".hasPrefix(file.expected) } ?? false
        }
    }

    @Test("a malformed tokenizer_config.json names that file")
    func malformedConfig() {
        let tokenizerJSON = Data("{\(Self.validModel)}".utf8)
        #expect {
            _ = try Tokenizer(tokenizerJSON: tokenizerJSON, tokenizerConfigJSON: Data(#"{"bos_token": 7}"#.utf8))
        } throws: { error in
            "\(error)".hasPrefix("tokenizer_config.json: bos_token is a number, but must be a string or an object")
        }
    }

    @Test("a missing directory names the tokenizer.json path")
    func missingDirectory() {
        #expect {
            _ = try Tokenizer(directory: URL(fileURLWithPath: "/nonexistent/model"))
        } throws: { error in
            "\(error)".hasPrefix("/nonexistent/model/tokenizer.json: cannot be read")
        }
    }

    @Test("merges may be \"a b\" strings or [a, b] arrays")
    func mergeFormats() throws {
        for merges in [#"["a b"]"#, #"[["a", "b"]]"#] {
            let json = #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": \#(merges)}}"#
            let tokenizer = try Tokenizer(tokenizerJSON: Data(json.utf8), tokenizerConfigJSON: nil)
            #expect(tokenizer.encode("ab") == [2])
        }
    }
}
