// StreamingDecoder: chunks concatenate to the full decode and never split a character.
import Testing
import Tokenization

@Suite("StreamingDecoder")
struct StreamingDecoderTests {
    static func stream(_ tokenizer: Tokenizer, _ ids: [Int32], skipSpecialTokens: Bool) -> [String] {
        var decoder = tokenizer.makeStreamingDecoder(skipSpecialTokens: skipSpecialTokens)
        var chunks = ids.map { decoder.append($0) }
        chunks.append(decoder.finish())
        return chunks
    }

    @Test(
        "concatenated chunks equal decode(allIDs), and no chunk holds a partial character",
        arguments: ReferenceFixture.allCases)
    func concatenationEqualsDecode(fixture: ReferenceFixture) throws {
        let tokenizer = try fixture.loadTokenizer()
        for reference in try fixture.loadRecord().cases {
            for skip in [true, false] {
                let full = tokenizer.decode(reference.ids, skipSpecialTokens: skip)
                let chunks = Self.stream(tokenizer, reference.ids, skipSpecialTokens: skip)
                #expect(
                    chunks.joined().utf8.elementsEqual(full.utf8),
                    "\(fixture.rawValue) \(reference.text.debugDescription) skip=\(skip): \(chunks)")
                if !full.unicodeScalars.contains("\u{FFFD}") {
                    #expect(
                        !chunks.contains { $0.unicodeScalars.contains("\u{FFFD}") },
                        "\(fixture.rawValue) \(reference.text.debugDescription): a chunk split a character: \(chunks)")
                }
            }
        }
    }

    @Test(
        "an emoji split across byte-fallback tokens is emitted whole, once a token that is not a byte ends the run")
    func byteFallbackEmoji() throws {
        let tokenizer = try ReferenceFixture.switchyardTrained.loadTokenizer()
        let ids = tokenizer.encode("a🦜b", addSpecialTokens: false)
        let parrotBytes = ["<0xF0>", "<0x9F>", "<0xA6>", "<0x9C>"].compactMap { tokenizer.tokenID(for: $0) }
        #expect(parrotBytes.count == 4)
        #expect(ids.count >= 6)
        var decoder = tokenizer.makeStreamingDecoder()
        var chunks: [String] = []
        for id in ids { chunks.append(decoder.append(id)) }
        chunks.append(decoder.finish())
        // Not before "b": a further byte (say <0xFF>) would turn the whole run into five U+FFFD.
        #expect(chunks.contains("🦜b"))
        #expect(!chunks.contains { $0.unicodeScalars.contains("\u{FFFD}") })
        #expect(chunks.joined() == "a🦜b")
    }

    @Test("the SentencePiece leading space is dropped only for the first token")
    func leadingSpace() throws {
        let tokenizer = try ReferenceFixture.switchyardTrained.loadTokenizer()
        let ids = tokenizer.encode("the experts", addSpecialTokens: true)
        let chunks = Self.stream(tokenizer, ids, skipSpecialTokens: true)
        #expect(chunks.joined() == "the experts")
        #expect(chunks.first { !$0.isEmpty } == "the")
    }

    @Test("a truncated byte sequence comes out of finish() as U+FFFD, like decode")
    func truncatedBytes() throws {
        let tokenizer = try ReferenceFixture.switchyardTrained.loadTokenizer()
        let ids = ["<0xF0>", "<0x9F>"].compactMap { tokenizer.tokenID(for: $0) }
        var decoder = tokenizer.makeStreamingDecoder()
        #expect(ids.map { decoder.append($0) }.joined().isEmpty)
        #expect(decoder.finish() == tokenizer.decode(ids))
    }
}
