// The dispatch plan of one MoE layer of one step: which token rows go to which worker, with which
// experts and routing weights, and how the workers' partial sums are added back.
//
// Pure value type: routing decision + placement in, per-worker batches out. No I/O.
public import Models
public import Tensors

/// Per worker slot, the rows routed to the experts it holds.
public struct DispatchPlan: Sendable, Equatable {
    /// The rows one worker computes, in CSR form (the wire layout of DISPATCH).
    public struct WorkerBatch: Sendable, Equatable {
        /// The worker slot in the placement.
        public let slot: Int
        /// Token indices within the step, ascending; row `r` of the batch is token `tokens[r]`.
        public var tokens: [Int]
        /// `rowCount + 1` offsets into `expertIDs` / `weights`.
        public var rowExpertOffsets: [UInt32]
        /// Expert ids of each row, in the token's top-k order.
        public var expertIDs: [UInt32]
        /// Routing weights matching `expertIDs`.
        public var weights: [Float]

        public var rowCount: Int { tokens.count }
    }

    /// Non-empty batches, in ascending slot order.
    public let batches: [WorkerBatch]

    /// Groups the routed (token, expert) pairs of one layer by the worker holding the expert.
    public init(routing: RoutingDecision, layer: LayerIndex, placement: Placement) {
        var bySlot = (0..<placement.workerCount).map {
            WorkerBatch(slot: $0, tokens: [], rowExpertOffsets: [0], expertIDs: [], weights: [])
        }
        let k = routing.expertsPerToken
        for token in 0..<routing.tokenCount {
            for choice in 0..<k {
                let expert = Int(routing.expertIDs[token * k + choice])
                let slot = placement.worker(holding: ExpertID(expert), in: layer)
                if bySlot[slot].tokens.last != token {
                    // First expert of this token on this worker: open a new row.
                    bySlot[slot].tokens.append(token)
                    bySlot[slot].rowExpertOffsets.append(bySlot[slot].rowExpertOffsets.last!)
                }
                bySlot[slot].expertIDs.append(UInt32(expert))
                bySlot[slot].weights.append(routing.weights[token * k + choice])
                bySlot[slot].rowExpertOffsets[bySlot[slot].rowExpertOffsets.count - 1] += 1
            }
        }
        batches = bySlot.filter { !$0.tokens.isEmpty }
    }

    /// Copies the batch's rows out of the step's hidden states.
    /// - Parameter hidden: [tokens, hiddenSize], f32
    /// - Returns: [batch.rowCount, hiddenSize], f32
    public static func gather(_ batch: WorkerBatch, from hidden: [Float], hiddenSize: Int) -> [Float] {
        var rows = [Float](repeating: 0, count: batch.rowCount * hiddenSize)
        for (row, token) in batch.tokens.enumerated() {
            for column in 0..<hiddenSize {
                rows[row * hiddenSize + column] = hidden[token * hiddenSize + column]
            }
        }
        return rows
    }

    /// Adds a worker's combined rows into the step's expert output.
    /// - Parameters:
    ///   - partial: [batch.rowCount, hiddenSize], f32, as returned in COMBINE
    ///   - output: [tokens, hiddenSize], f32
    public static func scatterAdd(
        _ partial: [Float], of batch: WorkerBatch, into output: inout [Float], hiddenSize: Int
    ) {
        precondition(partial.count == batch.rowCount * hiddenSize, "combine rows must match the dispatch")
        for (row, token) in batch.tokens.enumerated() {
            for column in 0..<hiddenSize {
                output[token * hiddenSize + column] += partial[row * hiddenSize + column]
            }
        }
    }
}
