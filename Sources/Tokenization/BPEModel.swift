// The byte-pair-encoding model: turns one pre-tokenized word into token ids by applying merges by rank.
import Synchronization

/// A `tokenizer.json` `model` of type `BPE`.
///
/// Thread-safe: the only mutable state is the per-word cache, guarded by a mutex.
final class BPEModel: Sendable {
    struct Pair: Hashable, Sendable {
        let left: Int32
        let right: Int32
    }

    struct Merge: Sendable {
        let rank: Int32
        let merged: Int32
    }

    let vocabulary: [ExactString: Int32]
    let tokensByID: [Int32: String]
    let merges: [Pair: Merge]
    let unknownTokenID: Int32?
    let fuseUnknown: Bool
    let byteFallback: Bool
    let ignoreMerges: Bool
    let continuingSubwordPrefix: String?
    let endOfWordSuffix: String?
    /// `byteTokenIDs[b]` is the id of `<0xBB>`, when byte fallback is on and the token exists.
    let byteTokenIDs: [Int32?]

    private let cache = Mutex<[ExactString: [Int32]]>([:])
    private static let cacheCapacity = 20_000

    init(json: JSONField, overrideByteFallback: Bool? = nil) throws {
        let type = try json.typeTag()
        guard type == "BPE" else { throw json["type"].error("is \"\(type)\", but only \"BPE\" is supported") }
        if case .number(let probability) = json["dropout"].value, probability > 0 {
            throw json["dropout"].error("is \(probability), but BPE dropout is not supported (must be null)")
        }

        var vocabulary: [ExactString: Int32] = [:]
        var tokensByID: [Int32: String] = [:]
        for (token, idField) in try json["vocab"].object() {
            let id = try idField.int()
            guard id >= 0, id <= Int(Int32.max) else { throw idField.error("is \(id), but token ids must be in 0...\(Int32.max)") }
            vocabulary[ExactString(token)] = Int32(id)
            tokensByID[Int32(id)] = token
        }
        self.vocabulary = vocabulary
        self.tokensByID = tokensByID

        var merges: [Pair: Merge] = [:]
        for (rank, entry) in try json["merges"].array().enumerated() {
            let parts: [String]
            switch entry.value {
            case .string(let line):
                parts = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            case .array:
                parts = try entry.array().map { try $0.string() }
            default:
                throw entry.error("is \(entry.value.typeName), but a merge must be \"a b\" or [\"a\", \"b\"]")
            }
            guard parts.count == 2 else { throw entry.error("must name exactly two tokens, e.g. \"a b\" or [\"a\", \"b\"]") }
            guard let left = vocabulary[ExactString(parts[0])], let right = vocabulary[ExactString(parts[1])] else {
                throw entry.error("merges \"\(parts[0])\" and \"\(parts[1])\", but both must be in model.vocab")
            }
            let prefixLength = try json["continuing_subword_prefix"].optionalString()?.utf8.count ?? 0
            var rightText = parts[1]
            if prefixLength > 0, rightText.utf8.count >= prefixLength {
                rightText = String(decoding: rightText.utf8.dropFirst(prefixLength), as: UTF8.self)
            }
            guard let merged = vocabulary[ExactString(parts[0] + rightText)] else {
                throw entry.error("merges into \"\(parts[0] + rightText)\", which is not in model.vocab")
            }
            let pair = Pair(left: left, right: right)
            // A repeated pair keeps its last rank, as Hugging Face builds the merge map by insertion.
            merges[pair] = Merge(rank: Int32(rank), merged: merged)
        }
        self.merges = merges

        if let unknown = try json["unk_token"].optionalString() {
            guard let id = vocabulary[ExactString(unknown)] else {
                throw json["unk_token"].error("is \"\(unknown)\", which is not in model.vocab")
            }
            unknownTokenID = id
        } else {
            unknownTokenID = nil
        }
        fuseUnknown = try json["fuse_unk"].bool(default: false)
        let byteFallback = try overrideByteFallback ?? json["byte_fallback"].bool(default: false)
        self.byteFallback = byteFallback
        ignoreMerges = try json["ignore_merges"].bool(default: false)
        continuingSubwordPrefix = try json["continuing_subword_prefix"].optionalString().flatMap { $0.isEmpty ? nil : $0 }
        endOfWordSuffix = try json["end_of_word_suffix"].optionalString().flatMap { $0.isEmpty ? nil : $0 }
        byteTokenIDs = (0..<256).map { byte in
            byteFallback ? vocabulary[ExactString(Self.byteTokenName(UInt8(byte)))] : nil
        }
    }

    /// `<0x41>` for byte 0x41, the SentencePiece byte-fallback token name.
    static func byteTokenName(_ byte: UInt8) -> String {
        let hex = String(byte, radix: 16, uppercase: true)
        return "<0x\(hex.count == 1 ? "0" + hex : hex)>"
    }

    /// The token ids for one word, cached.
    func tokenize(_ word: String) -> [Int32] {
        let key = ExactString(word)
        if let cached = cache.withLock({ $0[key] }) { return cached }
        let ids = computeTokens(word)
        cache.withLock { cache in
            if cache.count >= Self.cacheCapacity { cache.removeAll(keepingCapacity: true) }
            cache[key] = ids
        }
        return ids
    }

    private func computeTokens(_ word: String) -> [Int32] {
        if ignoreMerges, let id = vocabulary[ExactString(word)] { return [id] }

        // Initial symbols: one per Unicode scalar, or its byte tokens, or <unk>.
        var symbols: [Int32] = []
        var lastWasUnknown = false
        let scalars = Array(word.unicodeScalars)
        for (position, scalar) in scalars.enumerated() {
            var text = String(scalar)
            if position > 0, let prefix = continuingSubwordPrefix { text = prefix + text }
            if position == scalars.count - 1, let suffix = endOfWordSuffix { text += suffix }
            if let id = vocabulary[ExactString(text)] {
                symbols.append(id)
                lastWasUnknown = false
                continue
            }
            if byteFallback {
                let bytes = Array(String(scalar).utf8).map { byteTokenIDs[Int($0)] }
                if bytes.allSatisfy({ $0 != nil }) {
                    symbols.append(contentsOf: bytes.compactMap { $0 })
                    lastWasUnknown = false
                    continue
                }
            }
            // Unknown: Hugging Face fails the encode without an unk token; here the scalar is dropped instead.
            if let unknown = unknownTokenID {
                if !(fuseUnknown && lastWasUnknown) { symbols.append(unknown) }
                lastWasUnknown = true
            }
        }

        // Apply the lowest-ranked merge, leftmost first, until none applies.
        while symbols.count > 1 {
            var best: (index: Int, merge: Merge)?
            for index in 0..<(symbols.count - 1) {
                if let merge = merges[Pair(left: symbols[index], right: symbols[index + 1])],
                    best.map({ merge.rank < $0.merge.rank }) ?? true
                {
                    best = (index, merge)
                }
            }
            guard let (index, merge) = best else { break }
            symbols[index] = merge.merged
            symbols.remove(at: index + 1)
        }
        return symbols
    }
}
