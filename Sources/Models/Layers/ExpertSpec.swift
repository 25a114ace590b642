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

    /// Width of each expert's hidden layer (I).
    public let intermediateSize: Int
    /// The activation of the gate projection (`hidden_act`); only `silu` (SwiGLU) is computed today.
    public let activation: String
    /// The tensor names of expert `expert` of layer `layer`.
    let names: @Sendable (_ layer: Int, _ expert: Int) -> TensorNames

    init(intermediateSize: Int, activation: String = "silu", names: @escaping @Sendable (Int, Int) -> TensorNames) {
        self.intermediateSize = intermediateSize
        self.activation = activation
        self.names = names
    }

    /// The tensor names of expert `expert` of layer `layer`.
    public func tensorNames(layer: Int, expert: Int) -> TensorNames { names(layer, expert) }
}
