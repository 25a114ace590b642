// The vocabulary as a trie of token bytes, for constrained decoding: the tokens a grammar state
// allows are found in one walk that shares the work of common prefixes and drops a whole subtree
// at the first byte the grammar refuses.
import Synchronization
public import Tokenization

/// Every token's bytes (`Tokenizer.tokenBytes`) in a trie. Immutable; built once per engine.
public final class VocabularyTrie: Sendable {
    /// Per node, its children: `childBytes[childStart[n]..<childStart[n + 1]]`, sorted by byte.
    private let childStart: [Int32]
    private let childBytes: [UInt8]
    private let childNodes: [Int32]
    /// Per node, the tokens whose bytes end there: `tokens[tokenStart[n]..<tokenStart[n + 1]]`.
    private let tokenStart: [Int32]
    private let tokens: [Int32]
    /// The number of ids masks cover (the model's vocabulary; ids the tokenizer lacks are never allowed).
    public let vocabularySize: Int

    /// - Parameter tokenBytes: per id, its bytes; nil or empty for tokens never allowed (special tokens).
    public init(tokenBytes: [[UInt8]?], vocabularySize: Int) {
        self.vocabularySize = vocabularySize
        var entries: [(bytes: [UInt8], id: Int32)] = []
        for (id, bytes) in tokenBytes.prefix(vocabularySize).enumerated() {
            if let bytes, !bytes.isEmpty { entries.append((bytes, Int32(id))) }
        }
        entries.sort { $0.bytes.lexicographicallyPrecedes($1.bytes) }
        // Nodes are numbered breadth-first from sorted ranges: a node is a range of entries sharing
        // `depth` bytes; its children split the range by the byte at `depth`.
        var ranges: [(range: Range<Int>, depth: Int)] = [(0..<entries.count, 0)]
        var childStart: [Int32] = []
        var childBytes: [UInt8] = []
        var childNodes: [Int32] = []
        var tokenStart: [Int32] = []
        var tokens: [Int32] = []
        var node = 0
        while node < ranges.count {
            let (range, depth) = ranges[node]
            tokenStart.append(Int32(tokens.count))
            childStart.append(Int32(childBytes.count))
            var index = range.lowerBound
            while index < range.upperBound, entries[index].bytes.count == depth {
                tokens.append(entries[index].id)
                index += 1
            }
            while index < range.upperBound {
                let byte = entries[index].bytes[depth]
                var end = index + 1
                while end < range.upperBound, entries[end].bytes[depth] == byte { end += 1 }
                childBytes.append(byte)
                childNodes.append(Int32(ranges.count))
                ranges.append((index..<end, depth + 1))
                index = end
            }
            node += 1
        }
        tokenStart.append(Int32(tokens.count))
        childStart.append(Int32(childBytes.count))
        self.childStart = childStart
        self.childBytes = childBytes
        self.childNodes = childNodes
        self.tokenStart = tokenStart
        self.tokens = tokens
    }

    /// The tokens every byte of which `state` accepts, as a bit set over ids (`words[id / 64]`).
    func allowedTokens(from state: JSONMatchState, _ grammar: JSONGrammar) -> [UInt64] {
        var mask = [UInt64](repeating: 0, count: (vocabularySize + 63) / 64)
        visit(node: 0, state: state, grammar, into: &mask)
        return mask
    }

    private func visit(node: Int, state: JSONMatchState, _ grammar: JSONGrammar, into mask: inout [UInt64]) {
        for child in Int(childStart[node])..<Int(childStart[node + 1]) {
            var next = state
            guard next.advance(childBytes[child], grammar) else { continue }
            let childNode = Int(childNodes[child])
            for token in tokens[Int(tokenStart[childNode])..<Int(tokenStart[childNode + 1])] {
                mask[Int(token) >> 6] |= 1 << UInt64(token & 63)
            }
            visit(node: childNode, state: next, grammar, into: &mask)
        }
    }
}

/// The vocabulary's token bytes and trie, built on the first request that needs them (a walk of
/// the whole vocabulary, so not for engines that never constrain) and shared after.
public final class VocabularyIndex: Sendable {
    private let tokenizer: Tokenizer
    private let vocabularySize: Int
    private let built = Mutex<(VocabularyTrie, [[UInt8]?])?>(nil)

    public init(tokenizer: Tokenizer, vocabularySize: Int) {
        self.tokenizer = tokenizer
        self.vocabularySize = vocabularySize
    }

    /// The trie and, per id, the token's bytes.
    public func get() -> (VocabularyTrie, [[UInt8]?]) {
        built.withLock { built in
            if let built { return built }
            let bytes = tokenizer.tokenBytes()
            let made = (VocabularyTrie(tokenBytes: bytes, vocabularySize: vocabularySize), bytes)
            built = made
            return made
        }
    }
}
