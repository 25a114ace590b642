// Continuous batching decisions: which waiting requests join the running batch, and how many
// tokens each running sequence feeds in the next step. Pure value type: no clocks, no I/O.
//
// Policy (like vLLM's default): every decoding sequence gets its one token first; the rest of the
// step's token budget goes to prefill chunks in admission order. A request is admitted only when
// its whole KV reservation (prompt + max_tokens) fits, so an admitted request never runs out of
// KV memory half-way.

/// Identifies one sequence inside the scheduler.
public struct SequenceID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (lhs: SequenceID, rhs: SequenceID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "sequence \(rawValue)" }
}

/// Bounds on what the scheduler holds at once.
public struct SchedulerLimits: Sendable, Equatable {
    /// Sequences in the running batch.
    public var maxRunningSequences: Int
    /// Requests waiting to be admitted; more are refused (HTTP 429).
    public var maxWaitingRequests: Int
    /// KV cache slots over all sequences, in tokens.
    public var kvCacheTokens: Int
    /// Tokens fed through the model in one step (prefill chunks + one per decoding sequence).
    public var maxTokensPerStep: Int
    /// Micro-batches a step's sequences are split into, whose layers interleave so that the
    /// coordinator computes one's attention while the workers compute another's experts (1: none).
    public var microBatches: Int
    /// Prompt + generated tokens one sequence may hold (`serve --max-model-len`); nil: the model's
    /// `max_position_embeddings`.
    public var maxModelLength: Int?

    public init(
        maxRunningSequences: Int = 64, maxWaitingRequests: Int = 256, kvCacheTokens: Int = 65536,
        maxTokensPerStep: Int = 256, microBatches: Int = 1, maxModelLength: Int? = nil
    ) {
        self.maxModelLength = maxModelLength
        self.maxRunningSequences = maxRunningSequences
        self.maxWaitingRequests = maxWaitingRequests
        self.kvCacheTokens = kvCacheTokens
        self.maxTokensPerStep = maxTokensPerStep
        self.microBatches = microBatches
    }
}

/// The scheduler's bookkeeping: waiting queue, running sequences, KV reservations.
public struct BatchPlanner: Sendable, Equatable {
    /// A sequence in the running batch.
    public struct Running: Sendable, Equatable {
        public let id: SequenceID
        /// Prompt tokens not yet fed through the model.
        public var prefillRemaining: Int
        /// KV slots reserved: prompt + max_tokens.
        public let reservedTokens: Int
    }

    /// What one step feeds: per sequence, how many of its tokens (a prefill chunk, or 1 to decode).
    public struct Step: Sendable, Equatable {
        public var entries: [(id: SequenceID, tokenCount: Int)]
        public var tokenCount: Int { entries.reduce(0) { $0 + $1.tokenCount } }
        public static func == (lhs: Step, rhs: Step) -> Bool {
            lhs.entries.map(\.id) == rhs.entries.map(\.id) && lhs.entries.map(\.tokenCount) == rhs.entries.map(\.tokenCount)
        }
    }

    public let limits: SchedulerLimits
    public private(set) var waiting: [(id: SequenceID, promptTokens: Int, reservedTokens: Int)] = []
    public private(set) var running: [Running] = []
    public private(set) var reservedTokens = 0

    public init(limits: SchedulerLimits) { self.limits = limits }

    public static func == (lhs: BatchPlanner, rhs: BatchPlanner) -> Bool {
        lhs.limits == rhs.limits && lhs.running == rhs.running && lhs.reservedTokens == rhs.reservedTokens
            && lhs.waiting.map(\.id) == rhs.waiting.map(\.id)
    }

    /// Why a request cannot be queued.
    public enum Refusal: Error, Equatable, Sendable {
        /// The waiting queue is at its bound.
        case queueFull(waiting: Int)
        /// The request alone needs more KV memory than the scheduler has.
        case tooLarge(needed: Int, capacity: Int)
    }

    /// Queues a request needing `promptTokens + maxTokens` KV slots.
    public mutating func enqueue(_ id: SequenceID, promptTokens: Int, maxTokens: Int) throws(Refusal) {
        let needed = promptTokens + maxTokens
        guard needed <= limits.kvCacheTokens else { throw .tooLarge(needed: needed, capacity: limits.kvCacheTokens) }
        guard waiting.count < limits.maxWaitingRequests else { throw .queueFull(waiting: waiting.count) }
        waiting.append((id, promptTokens, needed))
    }

    /// Moves waiting requests into the running batch, first come first served, while the batch
    /// and the KV memory have room. Stops at the first request that does not fit (no overtaking),
    /// so a large request is not starved by small ones.
    /// - Returns: the admitted sequences, in order.
    public mutating func admit() -> [SequenceID] {
        var admitted: [SequenceID] = []
        while let next = waiting.first, running.count < limits.maxRunningSequences,
            reservedTokens + next.reservedTokens <= limits.kvCacheTokens
        {
            waiting.removeFirst()
            running.append(Running(id: next.id, prefillRemaining: next.promptTokens, reservedTokens: next.reservedTokens))
            reservedTokens += next.reservedTokens
            admitted.append(next.id)
        }
        return admitted
    }

    /// Plans the next step within the token budget: decoding sequences first (one token each),
    /// then prefill chunks in admission order. Does not change state; call `commit` after the
    /// step ran.
    public func planStep() -> Step {
        var budget = limits.maxTokensPerStep
        var entries: [(id: SequenceID, tokenCount: Int)] = []
        for sequence in running where sequence.prefillRemaining == 0 && budget > 0 {
            entries.append((sequence.id, 1))
            budget -= 1
        }
        for sequence in running where sequence.prefillRemaining > 0 && budget > 0 {
            let chunk = min(sequence.prefillRemaining, budget)
            entries.append((sequence.id, chunk))
            budget -= chunk
        }
        return Step(entries: entries)
    }

    /// Records that `step` ran: prefill chunks are consumed.
    public mutating func commit(_ step: Step) {
        for entry in step.entries {
            guard let index = running.firstIndex(where: { $0.id == entry.id }) else { continue }
            if running[index].prefillRemaining > 0 {
                running[index].prefillRemaining -= entry.tokenCount
            }
        }
    }

    /// Removes a finished or cancelled sequence, waiting or running, and frees its KV reservation.
    public mutating func remove(_ id: SequenceID) {
        waiting.removeAll { $0.id == id }
        if let index = running.firstIndex(where: { $0.id == id }) {
            reservedTokens -= running[index].reservedTokens
            running.remove(at: index)
        }
    }

    /// KV slots reserved ÷ capacity.
    public var kvUsage: Double { Double(reservedTokens) / Double(max(1, limits.kvCacheTokens)) }
}
