// What a request changes in its logits before sampling, with vLLM's semantics: `logit_bias`,
// `min_tokens`, the three repetition penalties, the `response_format` mask and `allowed_token_ids`. Everything is per
// sequence and reads only the sequence's own prompt and completion, so a sequence's tokens do not
// depend on which others share its batch.
//
// Order (as vLLM's V1 sampler): the grammar mask, `min_tokens` and `logit_bias`, then the penalties;
// temperature, top-k and top-p follow in `Sampler`. Reported logprobs stay those of the raw logits
// (vLLM's default `logprobs_mode`, raw_logprobs).

/// A request's logits adjustments; the defaults change nothing.
public struct LogitsAdjustments: Sendable, Equatable {
    /// Subtracted once from every token the completion holds; [-2, 2].
    public var presencePenalty: Float
    /// Subtracted per occurrence in the completion; [-2, 2].
    public var frequencyPenalty: Float
    /// Tokens of the prompt or completion: positive logits divided by it, negative multiplied; > 0.
    public var repetitionPenalty: Float
    /// Added to the logit of the token id; [-100, 100].
    public var logitBias: [Int32: Float]
    /// End-of-sequence tokens are masked until the completion holds this many tokens.
    public var minTokens: Int
    /// `response_format`: the completion is JSON that this grammar accepts.
    public var grammar: JSONGrammar?
    /// `allowed_token_ids`: only these tokens may be sampled; nil allows all.
    public var allowedTokenIDs: Set<Int32>?

    public init(
        presencePenalty: Float = 0, frequencyPenalty: Float = 0, repetitionPenalty: Float = 1,
        logitBias: [Int32: Float] = [:], minTokens: Int = 0, grammar: JSONGrammar? = nil
    ) {
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.repetitionPenalty = repetitionPenalty
        self.logitBias = logitBias
        self.minTokens = minTokens
        self.grammar = grammar
    }

    /// Nothing to do: sampling reads the raw logits.
    public var isIdentity: Bool { self == LogitsAdjustments() }

    /// Checks ranges as vLLM's `SamplingParams` does; the message names the parameter.
    public func validate(vocabularySize: Int, maxTokens: Int) throws(GenerationError) {
        guard presencePenalty.isFinite, (-2...2).contains(presencePenalty) else {
            throw .invalidRequest(field: "presence_penalty", "presence_penalty is \(presencePenalty), but must be in [-2, 2]")
        }
        guard frequencyPenalty.isFinite, (-2...2).contains(frequencyPenalty) else {
            throw .invalidRequest(field: "frequency_penalty", "frequency_penalty is \(frequencyPenalty), but must be in [-2, 2]")
        }
        guard repetitionPenalty.isFinite, repetitionPenalty > 0 else {
            throw .invalidRequest(
                field: "repetition_penalty", "repetition_penalty is \(repetitionPenalty), but must be greater than 0")
        }
        guard minTokens >= 0, minTokens <= maxTokens else {
            throw .invalidRequest(
                field: "min_tokens", "min_tokens is \(minTokens), but must be between 0 and max_tokens (\(maxTokens))")
        }
        if let bad = logitBias.keys.sorted().first(where: { $0 < 0 || Int($0) >= vocabularySize }) {
            throw .invalidRequest(
                field: "logit_bias", "logit_bias names token id \(bad), but token ids must be in 0..<\(vocabularySize)")
        }
        if let allowed = allowedTokenIDs {
            guard !allowed.isEmpty else {
                throw .invalidRequest(field: "allowed_token_ids", "allowed_token_ids is empty; give at least one token id")
            }
            if let bad = allowed.sorted().first(where: { $0 < 0 || Int($0) >= vocabularySize }) {
                throw .invalidRequest(
                    field: "allowed_token_ids",
                    "allowed_token_ids holds \(bad), but token ids must be in 0..<\(vocabularySize)")
            }
        }
        if let (id, bias) = logitBias.first(where: { !$0.value.isFinite || !(-100...100).contains($0.value) }) {
            throw .invalidRequest(field: "logit_bias", "logit_bias of token \(id) is \(bias), but must be in [-100, 100]")
        }
    }
}

/// Applies a sequence's `LogitsAdjustments` step by step; follows its completion through `accept`.
struct SequenceLogitsProcessor {
    let adjustments: LogitsAdjustments
    /// Tokens of the prompt (for the repetition penalty).
    private let promptTokens: Set<Int32>
    /// Occurrences of each token in the completion.
    private var completionCounts: [Int32: Int] = [:]
    private var generated = 0
    private var constraint: JSONConstraint?

    /// - Parameter vocabulary: the token trie, needed when the request has a grammar.
    init(_ adjustments: LogitsAdjustments, promptIDs: [Int32], vocabulary: () -> (VocabularyTrie, [[UInt8]?])) {
        self.adjustments = adjustments
        promptTokens = adjustments.repetitionPenalty != 1 ? Set(promptIDs) : []
        if let grammar = adjustments.grammar {
            let (trie, bytes) = vocabulary()
            constraint = JSONConstraint(grammar: grammar, trie: trie, tokenBytes: bytes)
        }
    }

    /// The JSON is complete and nothing else may follow: the sequence ends.
    var isComplete: Bool { constraint?.state.isTerminal ?? false }

    /// The logits to sample from, or nil when they are the raw ones.
    /// - Parameter logits: [vocabularySize], f32, the model's logits of this step
    /// - Throws: `GenerationError.invalidRequest` when the grammar allows no token of the vocabulary.
    mutating func apply(
        _ logits: UnsafeBufferPointer<Float>, endOfSequence: Set<Int32>
    ) throws(GenerationError) -> [Float]? {
        guard !adjustments.isIdentity else { return nil }
        var adjusted = Array(logits)
        if constraint != nil {
            try constraint!.mask(&adjusted, endOfSequence: endOfSequence)
        }
        if let allowed = adjustments.allowedTokenIDs {
            for id in adjusted.indices where !allowed.contains(Int32(id)) { adjusted[id] = -.infinity }
        }
        if generated < adjustments.minTokens {
            for id in endOfSequence where Int(id) < adjusted.count { adjusted[Int(id)] = -.infinity }
        }
        for (id, bias) in adjustments.logitBias { adjusted[Int(id)] += bias }
        if adjustments.repetitionPenalty != 1 {
            let penalty = adjustments.repetitionPenalty
            for id in promptTokens.union(completionCounts.keys) where Int(id) < adjusted.count {
                let logit = adjusted[Int(id)]
                adjusted[Int(id)] = logit > 0 ? logit / penalty : logit * penalty
            }
        }
        if adjustments.frequencyPenalty != 0 || adjustments.presencePenalty != 0 {
            for (id, count) in completionCounts where Int(id) < adjusted.count {
                adjusted[Int(id)] -= adjustments.frequencyPenalty * Float(count) + adjustments.presencePenalty
            }
        }
        return adjusted
    }

    /// Samples the next token from the adjusted logits and records it.
    /// - Parameter logits: [vocabularySize], f32, the model's logits of this step
    mutating func sample(
        _ logits: UnsafeBufferPointer<Float>, with sampler: inout Sampler, endOfSequence: Set<Int32>
    ) throws(GenerationError) -> Int32 {
        guard let adjusted = try apply(logits, endOfSequence: endOfSequence) else {
            let token = sampler.sample(logits)
            accept(token)
            return token
        }
        var token = sampler.sample(adjusted)
        // Rounding in the sampler's cumulative sum can fall through to its last candidate, which
        // may be a masked one: take the most likely allowed token instead.
        if adjusted[Int(token)] == -.infinity { token = Int32(Sampler.argmax(adjusted)) }
        accept(token)
        return token
    }

    /// Records the token sampled.
    mutating func accept(_ token: Int32) {
        generated += 1
        if adjustments.frequencyPenalty != 0 || adjustments.presencePenalty != 0 || adjustments.repetitionPenalty != 1 {
            completionCounts[token, default: 0] += 1
        }
        constraint?.accept(token)
    }
}

/// A grammar and where the completion stands in it, with the allowed tokens of states seen before.
struct JSONConstraint {
    let grammar: JSONGrammar
    let trie: VocabularyTrie
    let tokenBytes: [[UInt8]?]
    private(set) var state: JSONMatchState
    /// Allowed-token masks by state; a sequence revisits states (between properties, inside strings
    /// with no length bound), and a mask costs a walk of the trie.
    private var masks: [JSONMatchState: [UInt64]] = [:]
    static let maxCachedMasks = 512

    init(grammar: JSONGrammar, trie: VocabularyTrie, tokenBytes: [[UInt8]?]) {
        self.grammar = grammar
        self.trie = trie
        self.tokenBytes = tokenBytes
        state = JSONMatchState(grammar)
    }

    /// Sets every token the grammar does not allow to -inf; end of sequence stays only where the
    /// JSON is complete.
    mutating func mask(_ logits: inout [Float], endOfSequence: Set<Int32>) throws(GenerationError) {
        let allowed: [UInt64]
        if let cached = masks[state] {
            allowed = cached
        } else {
            allowed = trie.allowedTokens(from: state, grammar)
            if masks.count >= Self.maxCachedMasks { masks.removeAll(keepingCapacity: true) }
            masks[state] = allowed
        }
        var any = false
        let ends = state.isAccepting(grammar) ? endOfSequence.filter { Int($0) < logits.count } : []
        let saved = ends.map { logits[Int($0)] }
        logits.withUnsafeMutableBufferPointer { logits in
            for (word, bits) in allowed.enumerated() {
                let base = word << 6
                if bits != 0 { any = true }
                if bits == .max { continue }
                for bit in 0..<min(64, logits.count - base) where bits & (1 << UInt64(bit)) == 0 {
                    logits[base + bit] = -.infinity
                }
            }
        }
        for (id, logit) in zip(ends, saved) {
            logits[Int(id)] = logit
            any = true
        }
        guard any else {
            throw .invalidRequest(
                field: "response_format", "no token of the vocabulary continues the JSON after what was generated")
        }
    }

    /// Feeds the sampled token's bytes; an end-of-sequence token changes nothing.
    mutating func accept(_ token: Int32) {
        guard Int(token) < tokenBytes.count, let bytes = tokenBytes[Int(token)] else { return }
        for byte in bytes {
            let advanced = state.advance(byte, grammar)
            precondition(advanced, "token \(token) was sampled although the grammar refuses it")
        }
    }
}
