// Token-exact parity with transformers 5 on the committed reference fixtures.
import Testing
import Tokenization

@Suite("Parity with Hugging Face transformers on reference tokenizers")
struct HuggingFaceParityTests {
    @Test(
        "encode with special tokens equals tokenizer(text)[\"input_ids\"] for every case",
        arguments: ReferenceFixture.allCases)
    func idsWithSpecialTokens(fixture: ReferenceFixture) throws {
        let tokenizer = try fixture.loadTokenizer()
        for reference in try fixture.loadRecord().cases {
            let mismatch = firstMismatch(tokenizer.encode(reference.text), reference.ids)
            #expect(mismatch == nil, "\(fixture.rawValue) \(reference.text.debugDescription): \(mismatch ?? "")")
        }
    }

    @Test(
        "encode without special tokens equals tokenizer(text, add_special_tokens=False)",
        arguments: ReferenceFixture.allCases)
    func idsWithoutSpecialTokens(fixture: ReferenceFixture) throws {
        let tokenizer = try fixture.loadTokenizer()
        for reference in try fixture.loadRecord().cases {
            let mismatch = firstMismatch(
                tokenizer.encode(reference.text, addSpecialTokens: false), reference.idsWithoutSpecialTokens)
            #expect(mismatch == nil, "\(fixture.rawValue) \(reference.text.debugDescription): \(mismatch ?? "")")
        }
    }

    @Test("decode equals tokenizer.decode with and without skip_special_tokens", arguments: ReferenceFixture.allCases)
    func decode(fixture: ReferenceFixture) throws {
        let tokenizer = try fixture.loadTokenizer()
        for reference in try fixture.loadRecord().cases {
            #expect(
                tokenizer.decode(reference.ids) == reference.decoded,
                "\(fixture.rawValue) \(reference.text.debugDescription)")
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

@Suite("Tokenizer behaviour")
struct TokenizerBehaviourTests {
    @Test("concurrent encodes (sharing the BPE cache) give the same ids as serial ones")
    func concurrentEncode() async throws {
        let tokenizer = try ReferenceFixture.qwen2ByteLevel.loadTokenizer()
        let texts = try ReferenceFixture.qwen2ByteLevel.loadRecord().cases.map(\.text)
        let serial = texts.map { tokenizer.encode($0) }
        let concurrent = await withTaskGroup(of: (Int, [Int32]).self) { group in
            for (index, text) in texts.enumerated() { group.addTask { (index, tokenizer.encode(text)) } }
            var results = [[Int32]](repeating: [], count: texts.count)
            for await (index, ids) in group { results[index] = ids }
            return results
        }
        #expect(concurrent == serial)
    }

    // No stopwatch inside the test: the word is long enough (74 kB) that quadratic merging would
    // take many minutes in a debug build, so the overall time limit alone catches it on any machine,
    // however loaded; the heap-based merge takes well under a second.
    @Test(
        "a long paragraph is one BPE word under Metaspace without split, and still encodes losslessly within the overall limit",
        .timeLimit(.minutes(3)))
    func longParagraph() throws {
        let tokenizer = try ReferenceFixture.switchyardTrained.loadTokenizer()
        let text = String(repeating: "The router sends every token to two experts; ", count: 1600)
        let ids = tokenizer.encode(text, addSpecialTokens: false)
        #expect(tokenizer.decode(ids) == text)
    }

    @Test("token(for:) and tokenID(for:) tell composed and decomposed text apart")
    func scalarExactLookup() throws {
        let tokenizer = try ReferenceFixture.sentencePieceMetaspace.loadTokenizer()
        let composed = try #require(tokenizer.tokenID(for: "é"))
        #expect(tokenizer.token(for: composed) == "é")
        #expect(tokenizer.tokenID(for: "e\u{301}") != composed)
        #expect(tokenizer.tokenID(for: "<s>") == 1)
        #expect(tokenizer.token(for: 1_000_000) == nil)
    }

    @Test("ids outside the vocabulary are skipped when decoding")
    func unknownIDs() throws {
        let tokenizer = try ReferenceFixture.qwen2ByteLevel.loadTokenizer()
        let ids = tokenizer.encode("hi")
        #expect(tokenizer.decode([-1] + ids + [Int32.max]) == "hi")
    }
}
