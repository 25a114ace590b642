// The dispatch plan of one MoE layer of one step: which token rows go to which worker, with which
// experts and routing weights, and how the workers' partial sums are added back.
//
// Pure value type: routing decision + placement in, per-worker batches out. No I/O.
//
// Why the rows are cut the way they are: the in-process computation adds a token's expert terms
// in ascending expert id, starting from 0: ((0 + t₁) + t₂) + … . Floating-point addition is not
// associative, so for the distributed sum to be bitwise the same whatever the placement (and so
// for tokens not to change when the placement changes), a worker may pre-add only the terms of a
// token's *smallest* experts (a prefix of its ascending list); every other term comes back as a
// row of its own, and `combine` adds a token's rows in ascending order of their first expert.
// With top-2 routing this never costs a row: a worker holding both experts holds the prefix.
public import Models
public import Tensors

/// Per worker slot, the rows routed to the experts it holds.
public struct DispatchPlan: Sendable, Equatable {
    /// The rows one worker computes, in CSR form (the wire layout of DISPATCH).
    public struct WorkerBatch: Sendable, Equatable {
        /// The worker slot in the placement.
        public let slot: Int
        /// Token indices within the step, non-decreasing; row `r` of the batch is token `tokens[r]`.
        public var tokens: [Int]
        /// `rowCount + 1` offsets into `expertIDs` / `weights`.
        public var rowExpertOffsets: [UInt32]
        /// Expert ids of each row, in the token's top-k order.
        public var expertIDs: [UInt32]
        /// Routing weights matching `expertIDs`.
        public var weights: [Float]

        public var rowCount: Int { tokens.count }

        /// The smallest expert id of row `row`: the order in which `combine` adds it.
        func leadExpert(ofRow row: Int) -> UInt32 {
            expertIDs[Int(rowExpertOffsets[row])..<Int(rowExpertOffsets[row + 1])].min()!
        }
    }

    /// Non-empty batches, in ascending slot order.
    public let batches: [WorkerBatch]

    /// Groups the routed (token, expert) pairs of one layer by the worker computing them.
    ///
    /// An expert with replicas has its tokens split between them in token order, in contiguous
    /// runs whose lengths differ by at most one (replica `r` of `R` gets the `i`-th of the expert's
    /// `n` tokens when `r = ⌊i·R / n⌋`), so the plan is a pure function of routing and placement.
    public init(routing: RoutingDecision, layer: LayerIndex, placement: Placement) {
        let k = routing.expertsPerToken
        let holders = placement.holders[layer.rawValue]
        // Tokens routed to each expert, for the replica split.
        var routedCount = [Int](repeating: 0, count: holders.count)
        for expert in routing.expertIDs { routedCount[Int(expert)] += 1 }
        var seen = [Int](repeating: 0, count: holders.count)

        var bySlot = (0..<placement.workerCount).map {
            WorkerBatch(slot: $0, tokens: [], rowExpertOffsets: [0], expertIDs: [], weights: [])
        }
        var slotOfChoice = [Int](repeating: 0, count: k)
        var ascending = [Int](repeating: 0, count: k)
        var inPrefix = [Bool](repeating: false, count: k)
        for token in 0..<routing.tokenCount {
            let base = token * k
            for choice in 0..<k {
                let expert = Int(routing.expertIDs[base + choice])
                let replicas = holders[expert]
                slotOfChoice[choice] =
                    replicas.count == 1 ? replicas[0] : replicas[seen[expert] * replicas.count / routedCount[expert]]
                seen[expert] += 1
            }
            // The prefix of the token's ascending expert list held by the worker of its smallest expert.
            for choice in 0..<k { ascending[choice] = choice }
            ascending.sort { routing.expertIDs[base + $0] < routing.expertIDs[base + $1] }
            let leadSlot = slotOfChoice[ascending[0]]
            for choice in 0..<k { inPrefix[choice] = false }
            for choice in ascending {
                guard slotOfChoice[choice] == leadSlot else { break }
                inPrefix[choice] = true
            }
            // The prefix row first (its terms in top-k order), then one row per remaining term.
            var prefixRowOpen = false
            for choice in 0..<k where inPrefix[choice] {
                if !prefixRowOpen { Self.openRow(token: token, in: &bySlot[leadSlot]) }
                prefixRowOpen = true
                Self.append(choice: base + choice, of: routing, to: &bySlot[leadSlot])
            }
            for choice in 0..<k where !inPrefix[choice] {
                let slot = slotOfChoice[choice]
                Self.openRow(token: token, in: &bySlot[slot])
                Self.append(choice: base + choice, of: routing, to: &bySlot[slot])
            }
        }
        batches = bySlot.filter { !$0.tokens.isEmpty }
    }

    private static func openRow(token: Int, in batch: inout WorkerBatch) {
        batch.tokens.append(token)
        batch.rowExpertOffsets.append(batch.rowExpertOffsets.last!)
    }

    /// Adds entry `index` of the routing (expert id and weight) to the batch's last row.
    private static func append(choice index: Int, of routing: RoutingDecision, to batch: inout WorkerBatch) {
        batch.expertIDs.append(UInt32(routing.expertIDs[index]))
        batch.weights.append(routing.weights[index])
        batch.rowExpertOffsets[batch.rowExpertOffsets.count - 1] += 1
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

    /// Adds the workers' rows into the step's expert output, each token's rows in ascending order
    /// of their first expert: bitwise the in-process sum, whichever workers computed the rows and
    /// in whatever order they answered.
    /// - Parameters:
    ///   - partials: per batch of `batches` (same order), [batch.rowCount, hiddenSize], f32
    ///   - tokenCount: tokens in the step
    /// - Returns: [tokenCount, hiddenSize], f32
    public func combine(_ partials: [[Float]], tokenCount: Int, hiddenSize: Int) -> [Float] {
        precondition(partials.count == batches.count, "one partial per dispatched batch")
        // (token, lead expert, batch, row), sorted: a token's rows come out in ascending lead expert.
        var rows: [(token: Int, lead: UInt32, batch: Int, row: Int)] = []
        for (batchIndex, batch) in batches.enumerated() {
            precondition(partials[batchIndex].count == batch.rowCount * hiddenSize, "combine rows must match the dispatch")
            for row in 0..<batch.rowCount {
                rows.append((batch.tokens[row], batch.leadExpert(ofRow: row), batchIndex, row))
            }
        }
        rows.sort { ($0.token, $0.lead) < ($1.token, $1.lead) }
        var output = [Float](repeating: 0, count: tokenCount * hiddenSize)
        output.withUnsafeMutableBufferPointer { out in
            for entry in rows {
                partials[entry.batch].withUnsafeBufferPointer { partial in
                    let target = entry.token * hiddenSize
                    let source = entry.row * hiddenSize
                    for column in 0..<hiddenSize { out[target + column] += partial[source + column] }
                }
            }
        }
        return output
    }
}
