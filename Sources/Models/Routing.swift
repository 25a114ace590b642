// Vocabulary: the router scores every expert of a MoE layer for each token; the routing is the
// chosen experts (top-k) and their routing weights. It is what the coordinator dispatches.

/// The routing of one MoE layer for one step.
public struct RoutingDecision: Sendable, Equatable {
    /// Tokens routed (rows of the hidden states).
    public let tokenCount: Int
    /// Experts chosen per token (k).
    public let expertsPerToken: Int
    /// The chosen experts, [tokenCount, expertsPerToken], row-major, in top-k order (highest score first).
    public var expertIDs: [Int32]
    /// The routing weights, [tokenCount, expertsPerToken], f32, matching `expertIDs`; for Mixtral
    /// renormalised to sum to 1 per token.
    public var weights: [Float]

    /// Creates a routing; both arrays must hold `tokenCount × expertsPerToken` entries.
    public init(tokenCount: Int, expertsPerToken: Int, expertIDs: [Int32], weights: [Float]) {
        precondition(expertIDs.count == tokenCount * expertsPerToken, "routing: expertIDs is not [tokens, k]")
        precondition(weights.count == tokenCount * expertsPerToken, "routing: weights is not [tokens, k]")
        self.tokenCount = tokenCount
        self.expertsPerToken = expertsPerToken
        self.expertIDs = expertIDs
        self.weights = weights
    }

    /// The experts of token `token`, in top-k order.
    public func experts(ofToken token: Int) -> ArraySlice<Int32> {
        expertIDs[(token * expertsPerToken)..<((token + 1) * expertsPerToken)]
    }

    /// Tokens routed to each expert (a token counts once at each of its k experts).
    /// - Returns: [expertCount] counts.
    public func expertLoad(expertCount: Int) -> [Int] {
        var counts = [Int](repeating: 0, count: expertCount)
        for expert in expertIDs where Int(expert) < expertCount && expert >= 0 { counts[Int(expert)] += 1 }
        return counts
    }
}

/// Which rows of logits a forward pass returns.
public enum LogitsSelection: Sendable, Equatable {
    /// Only the last token's logits: [1, vocabularySize] (decoding).
    case lastToken
    /// Every token's logits: [tokens, vocabularySize] (scoring a prompt).
    case allTokens
}
