// Decoding bytes that are not valid UTF-8, as `tokenizers` does: ByteFallback turns every byte of an
// invalid run into U+FFFD; ByteLevel decodes with String::from_utf8_lossy (one U+FFFD per maximal
// invalid subsequence). Full decode and the streaming decoder must both give transformers' text.
import Foundation
import Testing
import Tokenization

@Suite("Decoding byte tokens that are not valid UTF-8")
struct ByteDecodingTests {
    @Test(
        "decode of byte tokens equals transformers' decode: a byte-fallback run that is not valid UTF-8 is one U+FFFD per byte, its ASCII bytes included",
        arguments: ReferenceFixture.allCases)
    func decode(fixture: ReferenceFixture) throws {
        let tokenizer = try fixture.loadTokenizer()
        let cases = try fixture.loadDecodeCases()
        #expect(!cases.isEmpty)
        for recorded in cases {
            #expect(
                tokenizer.decode(recorded.ids).unicodeScalars.elementsEqual(recorded.decoded.unicodeScalars),
                "\(fixture.rawValue) \(recorded.tokens)")
            #expect(
                tokenizer.decode(recorded.ids, skipSpecialTokens: true).unicodeScalars.elementsEqual(
                    recorded.decodedSkippingSpecialTokens.unicodeScalars),
                "\(fixture.rawValue) \(recorded.tokens) skipping special tokens")
        }
    }

    @Test(
        "streamed chunks of byte tokens concatenate to transformers' decode: no chunk holds a byte that a later byte turns into U+FFFD",
        arguments: ReferenceFixture.allCases)
    func stream(fixture: ReferenceFixture) throws {
        let tokenizer = try fixture.loadTokenizer()
        for recorded in try fixture.loadDecodeCases() {
            for skip in [true, false] {
                let expected = skip ? recorded.decodedSkippingSpecialTokens : recorded.decoded
                let chunks = StreamingDecoderTests.stream(tokenizer, recorded.ids, skipSpecialTokens: skip)
                #expect(
                    chunks.joined().unicodeScalars.elementsEqual(expected.unicodeScalars),
                    "\(fixture.rawValue) \(recorded.tokens) skip=\(skip): \(chunks)")
            }
        }
    }

    /// Byte strings and their String::from_utf8_lossy decoding: one U+FFFD per maximal subpart of an
    /// ill-formed sequence (Unicode 16 §3.9, "U+FFFD Substitution of Maximal Subparts", Table 3-8), the
    /// practice WHATWG's UTF-8 decoder and Python's `bytes.decode("utf-8", "replace")` follow too.
    static let lossyCases: [([UInt8], String)] = [
        (
            [0x61, 0xF1, 0x80, 0x80, 0xE1, 0x80, 0xC2, 0x62, 0x80, 0x63, 0x80, 0xBF, 0x64],
            "a\u{FFFD}\u{FFFD}\u{FFFD}b\u{FFFD}c\u{FFFD}\u{FFFD}d"
        ),
        ([0x41, 0xE2], "A\u{FFFD}"),
        ([0xE2, 0x82, 0x41], "\u{FFFD}A"),
        ([0xF0, 0x9F, 0x98, 0x78], "\u{FFFD}x"),
        ([0xE0, 0x80, 0x41], "\u{FFFD}\u{FFFD}A"),
        ([0xED, 0xA0, 0x80], "\u{FFFD}\u{FFFD}\u{FFFD}"),
        ([0xF4, 0x90, 0x80, 0x80], "\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}"),
        ([0xC0, 0xAF, 0x41], "\u{FFFD}\u{FFFD}A"),
        ([0xF5, 0x41, 0xFF], "\u{FFFD}A\u{FFFD}"),
        ([0x41, 0xE2, 0x82, 0xAC, 0x42], "A€B"),
    ]

    @Test(
        "Swift's String(decoding:as: UTF8.self), which the byte-level decoder uses, substitutes maximal subparts as String::from_utf8_lossy does",
        arguments: lossyCases)
    func swiftLossyDecoding(bytes: [UInt8], expected: String) {
        #expect(String(decoding: bytes, as: UTF8.self).unicodeScalars.elementsEqual(expected.unicodeScalars))
    }
}

@Suite("Byte-fallback tokens")
struct ByteFallbackTokenTests {
    @Test("a byte token is `<0x` + what Rust's u8::from_str_radix reads + `>`: `<0x+A>` is 0x0A, `<0x-0>` is no byte")
    func byteTokenSpelling() throws {
        // Expected texts from tokenizers 0.23's ByteFallback decoder on this vocabulary.
        let json = #"""
            {"model": {"type": "BPE", "vocab": {"<0x-0>": 0, "<0x+A>": 1, "<0x41>": 2, "a": 3, "<0x+->": 4}, "merges": []},
             "decoder": {"type": "ByteFallback"}}
            """#
        let tokenizer = try Tokenizer(tokenizerJSON: Data(json.utf8), tokenizerConfigJSON: nil)
        #expect(tokenizer.decode([0, 2]) == "<0x-0>A")
        #expect(tokenizer.decode([1]) == "\n")
        #expect(tokenizer.decode([2, 1, 3]) == "A\na")
        #expect(tokenizer.decode([4]) == "<0x+->")
    }
}
