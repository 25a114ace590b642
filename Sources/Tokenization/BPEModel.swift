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
    private static let cachedWordLengthLimit = 256

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
            guard id >= 0, id <= Int(Int32.max) else {
                throw idField.error("is \(id), but token ids must be in 0...\(Int32.max)")
            }
            vocabulary[ExactString(token)] = Int32(id)
            tokensByID[Int32(id)] = token
        }
        self.vocabulary = vocabulary
        self.tokensByID = tokensByID

        // With a continuing-subword prefix ("##"), "a ##b" merges into "ab": the right side loses its prefix.
        let prefixLength = try json["continuing_subword_prefix"].optionalString()?.utf8.count ?? 0
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
            guard parts.count == 2 else {
                throw entry.error("must name exactly two tokens, e.g. \"a b\" or [\"a\", \"b\"]")
            }
            guard let left = vocabulary[ExactString(parts[0])], let right = vocabulary[ExactString(parts[1])] else {
                throw entry.error("merges \"\(parts[0])\" and \"\(parts[1])\", but both must be in model.vocab")
            }
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
        continuingSubwordPrefix = try json["continuing_subword_prefix"].optionalString().flatMap {
            $0.isEmpty ? nil : $0
        }
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
        // Long words (a whole paragraph, under Metaspace without split) are not worth keeping.
        guard word.utf8.count <= Self.cachedWordLengthLimit else { return computeTokens(word) }
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

        return applyMerges(symbols)
    }

    /// Applies the lowest-ranked merge, leftmost first, until none applies.
    ///
    /// A linked list of symbols and a min-heap of candidate merges keyed by (rank, position), as in
    /// `tokenizers`: O(n log n), which matters because Llama-style tokenizers (Metaspace without
    /// split) hand the model a whole paragraph as one word. Stale heap entries (a side already merged
    /// away) are skipped when popped.
    private func applyMerges(_ initial: [Int32]) -> [Int32] {
        guard initial.count > 1 else { return initial }
        var ids = initial
        var next = Array(1...initial.count)  // initial.count means "none"
        next[initial.count - 1] = -1
        var previous = Array(-1..<(initial.count - 1))
        var alive = [Bool](repeating: true, count: initial.count)
        var heap = MergeHeap()
        for position in 0..<(ids.count - 1) {
            if let merge = merges[Pair(left: ids[position], right: ids[position + 1])] {
                heap.push(MergeCandidate(rank: merge.rank, position: position, merged: merge.merged))
            }
        }
        while let candidate = heap.pop() {
            let left = candidate.position
            let right = next[left]
            guard alive[left], right >= 0,
                let merge = merges[Pair(left: ids[left], right: ids[right])],
                merge.rank == candidate.rank, merge.merged == candidate.merged
            else { continue }
            ids[left] = merge.merged
            alive[right] = false
            next[left] = next[right]
            if next[right] >= 0 { previous[next[right]] = left }
            if previous[left] >= 0, let before = merges[Pair(left: ids[previous[left]], right: ids[left])] {
                heap.push(MergeCandidate(rank: before.rank, position: previous[left], merged: before.merged))
            }
            if next[left] >= 0, let after = merges[Pair(left: ids[left], right: ids[next[left]])] {
                heap.push(MergeCandidate(rank: after.rank, position: left, merged: after.merged))
            }
        }
        return ids.indices.filter { alive[$0] }.map { ids[$0] }
    }
}

/// A merge that may apply at `position` (the left symbol's index in the initial word).
struct MergeCandidate: Sendable {
    let rank: Int32
    let position: Int
    let merged: Int32

    /// Lower rank first; on equal rank the leftmost position.
    func precedes(_ other: MergeCandidate) -> Bool {
        rank != other.rank ? rank < other.rank : position < other.position
    }
}

/// A binary min-heap of merge candidates.
struct MergeHeap: Sendable {
    private var items: [MergeCandidate] = []

    mutating func push(_ item: MergeCandidate) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child].precedes(items[parent]) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> MergeCandidate? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < items.count, items[left].precedes(items[smallest]) { smallest = left }
                if right < items.count, items[right].precedes(items[smallest]) { smallest = right }
                if smallest == parent { break }
                items.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return top
    }
}
