// Expert load: how many tokens the router sent to each expert of each MoE layer.
public import Models
public import Tensors

/// The phase of generation a forward step belongs to.
public enum GenerationPhase: String, Sendable, Codable {
    /// The prompt's tokens, all at once.
    case prefill
    /// One sampled token fed back per step.
    case decode
}

/// Tokens routed per (layer, expert), separately for prefill and decode. A token counts once at
/// each of its top-k experts. Pure value type.
public struct ExpertLoad: Sendable, Equatable, Codable {
    /// `prefill[layer][expert]`: prompt tokens routed to the expert (empty for a dense layer).
    public private(set) var prefill: [[Int]]
    /// `decode[layer][expert]`: tokens fed through decode steps routed to the expert.
    public private(set) var decode: [[Int]]

    public init(layerCount: Int, expertCount: Int) {
        self.init(expertCounts: Array(repeating: expertCount, count: layerCount))
    }

    /// Zero counts for a model whose layer l has `expertCounts[l]` experts (a dense layer's row is empty).
    public init(expertCounts: [Int]) {
        let zeros = expertCounts.map { Array(repeating: 0, count: $0) }
        prefill = zeros
        decode = zeros
    }

    /// Counts one layer's routing decision.
    public mutating func record(_ routing: RoutingDecision, layer: LayerIndex, phase: GenerationPhase) {
        record(routing, tokens: 0..<routing.tokenCount, layer: layer, phase: phase)
    }

    /// Counts the routing of some of a step's tokens (one sequence's rows in a batched step).
    public mutating func record(
        _ routing: RoutingDecision, tokens: Range<Int>, layer: LayerIndex, phase: GenerationPhase
    ) {
        let k = routing.expertsPerToken
        for expert in routing.expertIDs[(tokens.lowerBound * k)..<(tokens.upperBound * k)] {
            switch phase {
            case .prefill: prefill[layer.rawValue][Int(expert)] += 1
            case .decode: decode[layer.rawValue][Int(expert)] += 1
            }
        }
    }

    /// Per layer and expert, prefill + decode.
    public var total: [[Int]] {
        zip(prefill, decode).map { zip($0, $1).map { $0 + $1 } }
    }
}
