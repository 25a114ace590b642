// TokenizerTrainer: deterministic output, exact vocabulary size, lossless round trips, and the committed
// fixture (which Hugging Face loaded and recorded in cases.json) is what the trainer produces today.
import Foundation
import TestSupport
import Testing
import Tokenization

@Suite("TokenizerTrainer")
struct TokenizerTrainerTests {
    static let fixtureVocabularySize = 512

    static let roundTripTexts = [
        "Hello, world!", "inner  double spaces and trailing  ", "tabs\tand\nnewlines\r\n", "The router picks experts.",
        "Café naïve résumé", "Cafe\u{301} decomposed", "日本語のテキスト", "Привет, мир", "👩‍💻 🇫🇷 👍🏽 😀",
        "def f(x):\n    return x ** 2", "ꙮ𓀀 rare scripts", "",
    ]

    @Test(
        "the trained vocabulary has exactly the requested size, reserved tokens filling what the corpus cannot",
        arguments: [300, 512, 1000, 32000])
    func vocabularySize(size: Int) throws {
        let files = try TokenizerTrainer.sentencePieceBPE(vocabularySize: size)
        let tokenizer = try Tokenizer(
            tokenizerJSON: files.tokenizerJSON, tokenizerConfigJSON: files.tokenizerConfigJSON)
        #expect(tokenizer.vocabularySize == size)
        #expect(tokenizer.tokenID(for: "<unk>") == 0)
        #expect(tokenizer.bosTokenID == 1)
        #expect(tokenizer.eosTokenID == 2)
        #expect(tokenizer.tokenID(for: "<0x00>") == 3)
        #expect(tokenizer.tokenID(for: "<0xFF>") == 258)
    }

    @Test("training is deterministic")
    func deterministic() throws {
        let first = try TokenizerTrainer.sentencePieceBPE(vocabularySize: 400)
        let second = try TokenizerTrainer.sentencePieceBPE(vocabularySize: 400)
        #expect(first.tokenizerJSON == second.tokenizerJSON)
        #expect(first.tokenizerConfigJSON == second.tokenizerConfigJSON)
    }

    /// Text starting with a space is excluded: Llama-style decoding strips one leading space (as in Hugging Face).
    @Test("encode then decode gives the text back", arguments: roundTripTexts)
    func roundTrip(text: String) throws {
        let files = try TokenizerTrainer.sentencePieceBPE(vocabularySize: Self.fixtureVocabularySize)
        let tokenizer = try Tokenizer(
            tokenizerJSON: files.tokenizerJSON, tokenizerConfigJSON: files.tokenizerConfigJSON)
        let ids = tokenizer.encode(text)
        #expect(ids.first == 1)
        let decoded = tokenizer.decode(ids, skipSpecialTokens: true)
        #expect(decoded.utf8.elementsEqual(text.utf8), "decoded \(decoded.debugDescription)")
    }

    @Test("a vocabulary too small for the special and byte tokens is rejected with the limits")
    func tooSmall() {
        #expect {
            _ = try TokenizerTrainer.sentencePieceBPE(vocabularySize: 100)
        } throws: { error in
            "\(error)".contains("vocabularySize is 100, but must be between 300")
        }
    }

    /// The test never writes the committed files (it would then compare them with themselves):
    /// on a mismatch it writes what the trainer produces to a temporary directory and names it, to
    /// be reviewed and copied over; then run Scripts/reference/tokenizer_fixtures.py to record
    /// Hugging Face's encodings of the new files.
    @Test("the committed switchyard-trained fixture is what the trainer produces")
    func committedFixtureIsCurrent() throws {
        let files = try TokenizerTrainer.sentencePieceBPE(vocabularySize: Self.fixtureVocabularySize)
        let directory = ReferenceFixture.switchyardTrained.directory
        let produced = [("tokenizer.json", files.tokenizerJSON), ("tokenizer_config.json", files.tokenizerConfigJSON)]
        let stale = try produced.filter { name, data in
            try Data(contentsOf: directory.appendingPathComponent(name)) != data
        }
        if !stale.isEmpty {
            let output = try TestPaths.makeTemporaryDirectory("switchyard-trained")
            for (name, data) in produced { try data.write(to: output.appendingPathComponent(name)) }
            let message =
                "\(stale.map(\.0).joined(separator: ", ")) differ from the trainer's output, written to \(output.path); "
                + "if the change is intended: cp \(output.path)/* \(directory.path)/ and rerun "
                + "Scripts/reference/tokenizer_fixtures.py"
            Issue.record(Comment(rawValue: message))
        }
    }
}
