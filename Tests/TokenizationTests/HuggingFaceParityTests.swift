// Token-exact parity with transformers 5 on the committed reference fixtures.
import Testing
import Tokenization

@Suite("Parity with Hugging Face transformers on reference tokenizers")
struct HuggingFaceParityTests {
    @Test("encode with special tokens equals tokenizer(text)[\"input_ids\"] for every case", arguments: ReferenceFixture.allCases)
    func idsWithSpecialTokens(fixture: ReferenceFixture) throws {
        let tokenizer = try fixture.loadTokenizer()
        for reference in try fixture.loadRecord().cases {
            let mismatch = firstMismatch(tokenizer.encode(reference.text), reference.ids)
            #expect(mismatch == nil, "\(fixture.rawValue) \(reference.text.debugDescription): \(mismatch ?? "")")
        }
    }

    @Test("encode without special tokens equals tokenizer(text, add_special_tokens=False)", arguments: ReferenceFixture.allCases)
    func idsWithoutSpecialTokens(fixture: ReferenceFixture) throws {
        let tokenizer = try fixture.loadTokenizer()
        for reference in try fixture.loadRecord().cases {
            let mismatch = firstMismatch(tokenizer.encode(reference.text, addSpecialTokens: false), reference.idsWithoutSpecialTokens)
            #expect(mismatch == nil, "\(fixture.rawValue) \(reference.text.debugDescription): \(mismatch ?? "")")
        }
    }

    @Test("decode equals tokenizer.decode with and without skip_special_tokens", arguments: ReferenceFixture.allCases)
    func decode(fixture: ReferenceFixture) throws {
        let tokenizer = try fixture.loadTokenizer()
        for reference in try fixture.loadRecord().cases {
            #expect(tokenizer.decode(reference.ids) == reference.decoded, "\(fixture.rawValue) \(reference.text.debugDescription)")
            #expect(
                tokenizer.decode(reference.ids, skipSpecialTokens: true) == reference.decodedSkippingSpecialTokens,
                "\(fixture.rawValue) \(reference.text.debugDescription) skipping special tokens")
        }
    }

    @Test("vocabulary size and BOS/EOS ids equal transformers'", arguments: ReferenceFixture.allCases)
    func vocabulary(fixture: ReferenceFixture) throws {
        let tokenizer = try fixture.loadTokenizer()
        let record = try fixture.loadRecord()
        #expect(tokenizer.vocabularySize == record.vocabularySize)
        #expect(tokenizer.bosTokenID == record.bosTokenID)
        #expect(tokenizer.eosTokenID == record.eosTokenID)
    }
}
