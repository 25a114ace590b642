// Incremental decoding for generation: text out as soon as it is final.

/// Turns ids into text one at a time, emitting only text that later ids cannot change.
///
/// Holds back UTF-8 that later bytes can still complete (an emoji split across byte-level tokens
/// shows up as a trailing U+FFFD until its last byte arrives), holds back a run of byte-fallback
/// tokens while it can still become valid UTF-8 (ByteFallback turns every byte of a run that is not
/// valid into U+FFFD, so a later byte can change the text of earlier ones), and relies on decoding a
/// window that starts at an already-emitted token, so the SentencePiece "strip the first space" rule
/// applies only once. Bytes that can never form valid UTF-8 are emitted, as the U+FFFD transformers'
/// `decode` gives them, with the token that makes that certain: a stream of such bytes does not go quiet.
/// Concatenating every `append` result and `finish()` equals `Tokenizer.decode(allIDs)`.
public struct StreamingDecoder: Sendable {
    private let tokenizer: Tokenizer
    private let skipSpecialTokens: Bool
    /// Ids from the start of the current window.
    private var window: [Int32] = []
    /// How many ids at the start of `window` have been emitted already.
    private var emittedCount = 0
    /// The decoding of `window[..<emittedCount]`.
    private var emittedText = ""

    init(tokenizer: Tokenizer, skipSpecialTokens: Bool) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one id; returns the newly completed text (often empty).
    public mutating func append(_ id: Int32) -> String {
        window.append(id)
        guard !tokenizer.leavesTextOpen(window, skipSpecialTokens: skipSpecialTokens) else { return "" }
        let text = tokenizer.decode(window, skipSpecialTokens: skipSpecialTokens)
        guard text.unicodeScalars.count > emittedText.unicodeScalars.count, text.utf8.starts(with: emittedText.utf8)
        else { return "" }
        let fresh = String(decoding: text.utf8.dropFirst(emittedText.utf8.count), as: UTF8.self)
        if tokenizer.endsInByteRun(window, skipSpecialTokens: skipSpecialTokens) {
            // A byte-fallback run that can no longer become valid was emitted as U+FFFD, but a next
            // byte token extends the same run: keep the run in the window, since a window starting
            // inside it would judge the rest as a run of its own (and could find it valid).
            emittedText = text
            emittedCount = window.count
            return fresh
        }
        // Start the next window at the tokens just emitted: they give the context (a leading space,
        // a pending byte) the next token's text depends on. Keep the longer window while the new
        // start would decode to whitespace only, because decoders that strip leading spaces
        // (Strip, Metaspace) must see the same leading text in the prefix and in the whole window.
        let recent = Array(window[emittedCount...])
        let recentText = tokenizer.decode(recent, skipSpecialTokens: skipSpecialTokens)
        if recentText.unicodeScalars.contains(where: { !$0.isWhitespace }) {
            window = recent
            emittedText = recentText
        } else {
            emittedText = text
        }
        emittedCount = window.count
        return fresh
    }

    /// Returns whatever text is still held back (e.g. an incomplete byte sequence, as U+FFFD) and resets.
    public mutating func finish() -> String {
        let text = tokenizer.decode(window, skipSpecialTokens: skipSpecialTokens)
        let rest =
            text.utf8.starts(with: emittedText.utf8)
            ? String(decoding: text.utf8.dropFirst(emittedText.utf8.count), as: UTF8.self) : text
        window = []
        emittedCount = 0
        emittedText = ""
        return rest
    }
}
