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

/// A run of byte tokens and the chunks the streaming decoder must give for it: one per token, then
/// `finish()`'s.
struct InvalidByteCase: Sendable, CustomTestStringConvertible {
    let fixture: ReferenceFixture
    let tokens: [String]
    let chunks: [String]
    var testDescription: String { "\(fixture.rawValue) \(tokens)" }
}

@Suite("StreamingDecoder on bytes that can never form valid UTF-8")
struct InvalidByteStreamingTests {
    static let fffd = "\u{FFFD}"

    // Byte-fallback tokens are spelled <0xAB>; ByteLevel (GPT-2) tokens are the byte stand-ins of
    // bytes_to_unicode: 0x41 is "A", 0xE2 is "â", 0x80 is "Ģ" (U+0122), 0x82 is "Ĥ" (U+0124).
    static let cases: [InvalidByteCase] = [
        // A lone continuation byte can start nothing: final at once.
        .init(fixture: .switchyardTrained, tokens: ["<0x80>"], chunks: [fffd, ""]),
        // 0xE2 could start "€"; 0x41 after it cannot continue it, and ByteFallback makes the whole run U+FFFD.
        .init(fixture: .switchyardTrained, tokens: ["<0xE2>", "<0x41>"], chunks: ["", fffd + fffd, ""]),
        // "A" is valid until 0xE2 0x41 make the run invalid; then every further byte of the run is one U+FFFD.
        .init(
            fixture: .switchyardTrained, tokens: ["<0x41>", "<0xE2>", "<0x41>", "<0x42>"],
            chunks: ["", "", fffd + fffd + fffd, fffd, ""]),
        // 0xC3 0xA9 alone would be "é", but they extend a run that is already invalid.
        .init(
            fixture: .switchyardTrained, tokens: ["<0xE2>", "<0x41>", "<0xC3>", "<0xA9>"],
            chunks: ["", fffd + fffd, fffd, fffd, ""]),
        // ByteLevel: String::from_utf8_lossy, one U+FFFD per maximal ill-formed subpart.
        .init(fixture: .gpt2ByteLevel, tokens: ["Ģ"], chunks: [fffd, ""]),
        .init(fixture: .gpt2ByteLevel, tokens: ["â", "A"], chunks: ["", fffd + "A", ""]),
        // 0xE2 0x82 can still become "€": held until 0x41 shows it will not.
        .init(fixture: .gpt2ByteLevel, tokens: ["â", "Ĥ", "A"], chunks: ["", "", fffd + "A", ""]),
        .init(fixture: .gpt2ByteLevel, tokens: ["Ģ", "Ģ"], chunks: [fffd, fffd, ""]),
        // 0xE2 0x80 0x80 is U+2000 (a space); the 0x80 after it can continue nothing.
        .init(fixture: .gpt2ByteLevel, tokens: ["â", "Ģ", "Ģ", "Ģ"], chunks: ["", "", "\u{2000}", fffd, ""]),
    ]

    @Test(
        "bytes that cannot complete a character come out as U+FFFD with the token that makes it certain, and the chunks concatenate to decode",
        arguments: cases)
    func emittedWhenCertain(_ example: InvalidByteCase) throws {
        let tokenizer = try example.fixture.loadTokenizer()
        let ids = try example.tokens.map { token in
            try #require(tokenizer.tokenID(for: token), "\(example.fixture.rawValue) has no token \(token)")
        }
        let chunks = StreamingDecoderTests.stream(tokenizer, ids, skipSpecialTokens: true)
        #expect(chunks.map { Array($0.unicodeScalars) } == example.chunks.map { Array($0.unicodeScalars) })
        #expect(chunks.joined().unicodeScalars.elementsEqual(tokenizer.decode(ids).unicodeScalars))
    }

    @Test("a long run of invalid byte tokens streams one U+FFFD per token instead of going quiet until the end")
    func longInvalidRun() throws {
        let tokenizer = try ReferenceFixture.switchyardTrained.loadTokenizer()
        let continuation = try #require(tokenizer.tokenID(for: "<0x80>"))
        let ids = Array(repeating: continuation, count: 200)
        let chunks = StreamingDecoderTests.stream(tokenizer, ids, skipSpecialTokens: true)
        #expect(chunks.dropLast().allSatisfy { $0 == Self.fffd })
        #expect(chunks.last == "")
        #expect(chunks.joined() == tokenizer.decode(ids))
    }
}
