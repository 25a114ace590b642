import Kernels
// One decoder layer, assembled by an architecture from the shared layers: input norm, attention,
// post-attention norm, then a feed-forward block that is either the routed experts (run outside the
// layer, possibly on other machines, with an optional shared expert here) or a dense MLP.
// Legend: T = tokens, H = hidden size.
import Tensors

/// The feed-forward block of a decoder layer.
enum FeedForward: Sendable {
    /// Routed experts, run by the caller's dispatch; a shared expert, if any, runs here.
    case experts(Router, shared: SharedExpert?)
    /// A dense MLP run here.
    case dense(DenseMLP)

    /// This block with `transform` applied to its MLP's matrices (dense or shared expert); the router
    /// stays as it is (it is small, and its choices are what the experts' load depends on).
    func mappingMatrices(_ transform: (WeightTensor) -> WeightTensor) -> FeedForward {
        switch self {
        case .experts(let router, let shared): .experts(router, shared: shared?.mappingMatrices(transform))
        case .dense(let mlp): .dense(mlp.mappingMatrices(transform))
        }
    }
}

/// The self-attention block of a decoder layer.
enum SelfAttention: Sendable {
    /// Grouped-query attention caching full keys and values.
    case standard(Attention)
    /// Multi-head latent attention caching the compressed latent (DeepSeek).
    case latent(LatentAttention)

    /// Runs the block; see ``Attention/callAsFunction(_:chunks:layer:caches:)``.
    /// - Parameter normed: [T, H], f32.
    /// - Returns: [T, H], f32.
    func callAsFunction(
        _ normed: [Float], chunks: [ChunkSpan], layer: Int, caches: UnsafeMutableBufferPointer<KVCache>
    ) -> [Float] {
        switch self {
        case .standard(let attention): attention(normed, chunks: chunks, layer: layer, caches: caches)
        case .latent(let attention): attention(normed, chunks: chunks, layer: layer, caches: caches)
        }
    }

    /// This block with `transform` applied to its projections. Latent attention (DeepSeek) stays as
    /// it is: its key and value expansion is absorbed into other products at load, from the stored values.
    func mappingMatrices(_ transform: (WeightTensor) -> WeightTensor) -> SelfAttention {
        switch self {
        case .standard(let attention): .standard(attention.mappingMatrices(transform))
        case .latent: self
        }
    }
}

/// One decoder layer's part that the coordinator runs.
struct DecoderLayer: Sendable {
    /// The layer's index in the model.
    let index: Int
    /// [H], f32
    let inputNorm: FloatTensor
    let attention: SelfAttention
    /// [H], f32
    let postAttentionNorm: FloatTensor
    let feedForward: FeedForward
    /// ε of the two norms.
    let epsilon: Float

    /// This layer with `transform` applied to its attention and MLP matrices (see the blocks'
    /// `mappingMatrices`): how `--quantize q8` holds them as q8, and how they are copied into a
    /// ``WeightArena`` at load.
    func mappingMatrices(_ transform: (WeightTensor) -> WeightTensor) -> DecoderLayer {
        DecoderLayer(
            index: index, inputNorm: inputNorm, attention: attention.mappingMatrices(transform),
            postAttentionNorm: postAttentionNorm, feedForward: feedForward.mappingMatrices(transform), epsilon: epsilon)
    }

    /// The layer up to its feed-forward block: adds the attention output to `hidden` in place, then
    /// returns the post-attention-normed rows the feed-forward block takes.
    /// - Parameter hidden: the residual stream, [T, H], f32, chunk 0's rows first.
    /// - Returns: [T, H], f32.
    func attend(
        _ hidden: inout [Float], chunks: [ChunkSpan], caches: UnsafeMutableBufferPointer<KVCache>
    ) -> [Float] {
        let attended = attention(
            rmsNorm(hidden, weight: inputNorm, epsilon: epsilon), chunks: chunks, layer: index, caches: caches)
        for position in hidden.indices { hidden[position] += attended[position] }
        return rmsNorm(hidden, weight: postAttentionNorm, epsilon: epsilon)
    }

    /// Adds a feed-forward output [T, H] to `hidden`.
    /// - Throws: `ModelError.invalidInput` when `output` has the wrong size.
    func add(_ output: [Float], to hidden: inout [Float]) throws(ModelError) {
        guard output.count == hidden.count else {
            let width = inputNorm.count
            throw ModelError.invalidInput(
                "experts of layer \(index) returned \(output.count) values, expected [\(hidden.count / width), \(width)]")
        }
        for position in hidden.indices { hidden[position] += output[position] }
    }
}
