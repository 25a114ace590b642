// Vocabulary: an expert spec says what one routed expert of an architecture is: which checkpoint
// tensors hold its gate, up and down projections, their widths and its activation. An ExpertStore
// computes what the spec says, so a worker can hold any architecture's experts.

/// What one routed expert is: `down(act(gate x) ⊙ up x)` with the tensors named here.
public struct ExpertSpec: Sendable {
    /// The tensor names of one expert's projections.
    public struct TensorNames: Sendable, Equatable {
        /// [I, H]
        public var gate: String
        /// [I, H]
        public var up: String
        /// [H, I]
        public var down: String
    }

    /// gpt-oss's form of the experts: every expert of a layer in one stacked tensor per projection,
    /// stored input-major (`x @ W`, not `nn.Linear`'s `x @ Wᵀ`), with biases, and the clamped SwiGLU.
    public struct Stacked: Sendable {
        /// The stacked tensors of one MoE layer.
        public struct LayerNames: Sendable, Equatable {
            /// [E, H, 2I]: gate and up interleaved along the last dimension (gate at even columns).
            public var gateUp: String
            /// [E, 2I], interleaved likewise.
            public var gateUpBias: String
            /// [E, I, H]
            public var down: String
            /// [E, H]
            public var downBias: String
        }
        /// The stacked tensors of layer `layer`.
        let names: @Sendable (_ layer: Int) -> LayerNames
        /// The activation: `(clamp(up, -limit, limit) + 1) · g · σ(alpha · g)` with `g = min(gate, limit)`.
        public var alpha: Float
        public var limit: Float
        /// gate_up_proj and down_proj are stored as MXFP4 (`<name>_blocks` [E, out, in / 32, 16] and
        /// `<name>_scales` [E, out, in / 32], U8, the `nn.Linear` layout) instead of [E, in, out] numbers.
        public var mxfp4: Bool

        init(alpha: Float, limit: Float, mxfp4: Bool = false, names: @escaping @Sendable (Int) -> LayerNames) {
            self.alpha = alpha
            self.limit = limit
            self.mxfp4 = mxfp4
            self.names = names
        }

        /// The stacked tensors of layer `layer`.
        public func layerNames(_ layer: Int) -> LayerNames { names(layer) }
    }

    /// Width of each expert's hidden layer (I).
    public let intermediateSize: Int
    /// When set, the experts are stacked per layer as gpt-oss stores them, and ``tensorNames(layer:expert:)``
    /// names the stacked tensors that hold the expert (gate and up: the gate_up tensor).
    public let stacked: Stacked?
    /// The activation of the gate projection (`hidden_act`); only `silu` (SwiGLU) is computed today.
    public let activation: String
    /// The tensor names of expert `expert` of layer `layer`.
    let names: @Sendable (_ layer: Int, _ expert: Int) -> TensorNames

    init(intermediateSize: Int, activation: String = "silu", names: @escaping @Sendable (Int, Int) -> TensorNames) {
        self.intermediateSize = intermediateSize
        self.activation = activation
        self.names = names
        stacked = nil
    }

    /// Experts stacked per layer (gpt-oss).
    init(intermediateSize: Int, activation: String = "silu", stacked: Stacked) {
        self.intermediateSize = intermediateSize
        self.activation = activation
        self.stacked = stacked
        names = { layer, _ in
            let layerNames = stacked.layerNames(layer)
            return TensorNames(gate: layerNames.gateUp, up: layerNames.gateUp, down: layerNames.down)
        }
    }

    /// The tensor names of expert `expert` of layer `layer`.
    public func tensorNames(layer: Int, expert: Int) -> TensorNames { names(layer, expert) }
}
