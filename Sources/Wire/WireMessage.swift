public import Tensors

/// One message of the Switchyard protocol, as a Swift value. `WireCodec` converts it to frames.
///
/// Directions: worker → coordinator: HELLO, READY, COMBINE, HEARTBEAT; coordinator → worker:
/// WELCOME, ASSIGN, DISPATCH, HEARTBEAT; either: ERROR, BYE; client → coordinator:
/// GENERATE_REQUEST; coordinator → client: GENERATE_RESULT.
public enum WireMessage: Sendable, Equatable {
    case hello(Hello)
    case welcome(Welcome)
    case assign(Assign)
    case ready(Ready)
    case dispatch(Dispatch)
    case combine(Combine)
    case heartbeat(Heartbeat)
    case error(ErrorReport)
    case bye(Bye)
    case generateRequest(GenerateRequest)
    case generateResult(GenerateResult)

    /// The message's kind, for logs and errors.
    public var kind: MessageKind {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .assign: .assign
        case .ready: .ready
        case .dispatch: .dispatch
        case .combine: .combine
        case .heartbeat: .heartbeat
        case .error: .error
        case .bye: .bye
        case .generateRequest: .generateRequest
        case .generateResult: .generateResult
        }
    }
}

/// The kind of a message, named as in logs (`DISPATCH`).
public enum MessageKind: String, Sendable, CaseIterable, CustomStringConvertible {
    case hello = "HELLO"
    case welcome = "WELCOME"
    case assign = "ASSIGN"
    case ready = "READY"
    case dispatch = "DISPATCH"
    case combine = "COMBINE"
    case heartbeat = "HEARTBEAT"
    case error = "ERROR"
    case bye = "BYE"
    case generateRequest = "GENERATE_REQUEST"
    case generateResult = "GENERATE_RESULT"

    /// Frames a message of this kind has: 2 (header + tensor) for DISPATCH and COMBINE, else 1.
    public var frameCount: Int {
        switch self {
        case .dispatch, .combine: 2
        default: 1
        }
    }

    /// The upper-case name, e.g. `DISPATCH`.
    public var description: String { rawValue }
}

extension WireMessage {
    /// worker → coordinator: registration. The protocol version travels in every header.
    public struct Hello: Sendable, Equatable {
        /// The worker's self-chosen name (for logs), e.g. its host name.
        public var workerName: String
        /// Lowercase hex digest of the model files the worker serves; must match the coordinator's.
        public var modelFingerprint: String
        /// Compute threads the worker will use (its capacity), 0 ... UInt32.max.
        public var threads: Int
        /// The worker's process id, 0 ... UInt32.max.
        public var pid: Int
        /// SHA-256 of each expert tensor the worker holds, in the model's expert tensor order
        /// (empty from a worker that predates them).
        public var expertTensorDigests: [TensorDigest]
        /// The worker's kernel path as `switchyard system-info` names it (`avx512bf16`, `amx`, …; empty
        /// from a worker that predates it): the coordinator refuses a worker whose fast bf16 products
        /// would not give its own bits.
        public var kernelPath: String

        public init(
            workerName: String, modelFingerprint: String, threads: Int, pid: Int, expertTensorDigests: [TensorDigest] = [],
            kernelPath: String = ""
        ) {
            self.workerName = workerName
            self.modelFingerprint = modelFingerprint
            self.threads = threads
            self.pid = pid
            self.expertTensorDigests = expertTensorDigests
            self.kernelPath = kernelPath
        }
    }

    /// coordinator → worker: registration accepted.
    public struct Welcome: Sendable, Equatable {
        /// The id the coordinator gave this worker.
        public var workerID: WorkerID
        /// The coordinator's name (for logs).
        public var coordinatorName: String

        public init(workerID: WorkerID, coordinatorName: String) {
            self.workerID = workerID
            self.coordinatorName = coordinatorName
        }
    }

    /// coordinator → worker: the experts the worker must hold (replaces any earlier assignment).
    public struct Assign: Sendable, Equatable {
        /// The (layer, expert) pairs to load; layer and expert ids fit in UInt32.
        public var experts: [LayerExpert]
        /// How the worker multiplies by bf16-stored weights (``BFloat16Arithmetic/exact`` from a 1.0 peer).
        public var arithmetic: BFloat16Arithmetic
        /// How the worker holds the expert weights (``WeightQuantization/none`` from a peer that does not say).
        public var quantization: WeightQuantization

        public init(
            experts: [LayerExpert], arithmetic: BFloat16Arithmetic = .exact, quantization: WeightQuantization = .none
        ) {
            self.experts = experts
            self.arithmetic = arithmetic
            self.quantization = quantization
        }
    }

    /// worker → coordinator: the assigned experts are loaded.
    public struct Ready: Sendable, Equatable {
        /// How many (layer, expert) pairs the worker now holds, 0 ... UInt32.max.
        public var loadedExpertCount: Int
        /// Wall time the load took, in seconds; finite and ≥ 0.
        public var loadSeconds: Double

        public init(loadedExpertCount: Int, loadSeconds: Double) {
            self.loadedExpertCount = loadedExpertCount
            self.loadSeconds = loadSeconds
        }
    }

    /// coordinator → worker: one layer's hidden states of the token rows routed to the worker's
    /// experts, with each row's experts and routing weights (CSR).
    ///
    /// Row `r` uses `expertIDs[rowExpertOffsets[r] ..< rowExpertOffsets[r + 1]]` with the weights
    /// at the same indices. The structure is checked on construction, so a value always encodes.
    public struct Dispatch: Sendable, Equatable {
        public let requestID: RequestID
        public let step: StepIndex
        /// The MoE layer, 0 ... UInt32.max.
        public let layer: LayerIndex
        /// CSR row offsets into `expertIDs` and `weights`: rowCount + 1 entries, from 0,
        /// non-decreasing, at most `WireLimits.maxExpertsPerRow` apart, ending at `expertIDs.count`.
        public let rowExpertOffsets: [Int]
        /// The expert of each (row, slot), ids 0 ... UInt32.max.
        public let expertIDs: [ExpertID]
        /// The routing weight of each (row, slot), finite.
        public let weights: [Float]
        /// The rows' hidden states, [rowCount, hiddenSize].
        public let hiddenStates: HiddenStates

        /// Creates a dispatch.
        /// - Precondition: the CSR structure is as documented on the properties (a programmer
        ///   error otherwise; `WireCodec.decode` throws instead for frames from the network).
        public init(
            requestID: RequestID, step: StepIndex, layer: LayerIndex, rowExpertOffsets: [Int],
            expertIDs: [ExpertID], weights: [Float], hiddenStates: HiddenStates
        ) {
            precondition(
                UInt32(exactly: layer.rawValue) != nil, "Dispatch: \(layer) does not fit the wire's uint32")
            precondition(
                expertIDs.allSatisfy { UInt32(exactly: $0.rawValue) != nil },
                "Dispatch: an expert id does not fit the wire's uint32")
            do {
                try Self.checkRouting(
                    rowCount: hiddenStates.rowCount, offsets: rowExpertOffsets,
                    expertIDCount: expertIDs.count, weights: weights)
            } catch {
                preconditionFailure("WireMessage.Dispatch: \(error)")
            }
            self.init(
                checkedRequestID: requestID, step: step, layer: layer, rowExpertOffsets: rowExpertOffsets,
                expertIDs: expertIDs, weights: weights, hiddenStates: hiddenStates)
        }

        /// Creates a dispatch whose structure the caller has already checked.
        init(
            checkedRequestID requestID: RequestID, step: StepIndex, layer: LayerIndex, rowExpertOffsets: [Int],
            expertIDs: [ExpertID], weights: [Float], hiddenStates: HiddenStates
        ) {
            self.requestID = requestID
            self.step = step
            self.layer = layer
            self.rowExpertOffsets = rowExpertOffsets
            self.expertIDs = expertIDs
            self.weights = weights
            self.hiddenStates = hiddenStates
        }

        /// Rows (tokens) in this dispatch.
        public var rowCount: Int { hiddenStates.rowCount }

        /// The experts and routing weights of row `row` (0 ..< rowCount).
        public func route(ofRow row: Int) -> (expertIDs: ArraySlice<ExpertID>, weights: ArraySlice<Float>) {
            let range = rowExpertOffsets[row]..<rowExpertOffsets[row + 1]
            return (expertIDs[range], weights[range])
        }

        /// Checks the dispatch against a model whose layer l has `expertCounts[l]` experts: the layer
        /// exists and is a MoE layer (a dense layer has 0), every expert id is below its expert count,
        /// and the hidden size matches.
        /// - Throws: `WireError.layerOutOfRange`, `.denseLayer`, `.expertOutOfRange` or `.hiddenSizeMismatch`.
        public func validate(expertCounts: [Int], hiddenSize: Int) throws(WireError) {
            let layerCount = expertCounts.count
            guard layer.rawValue >= 0, layer.rawValue < layerCount else {
                throw .layerOutOfRange(.dispatch, layer: layer, layerCount: layerCount)
            }
            let expertCount = expertCounts[layer.rawValue]
            guard expertCount > 0 else { throw .denseLayer(.dispatch, layer: layer) }
            guard hiddenStates.hiddenSize == hiddenSize else {
                throw .hiddenSizeMismatch(.dispatch, hiddenSize: hiddenStates.hiddenSize, expected: hiddenSize)
            }
            for row in 0..<rowCount {
                for expert in route(ofRow: row).expertIDs where expert.rawValue < 0 || expert.rawValue >= expertCount {
                    throw .expertOutOfRange(.dispatch, row: row, expert: expert, expertCount: expertCount)
                }
            }
        }

        /// The CSR checks shared by `init` (precondition) and decoding (thrown).
        static func checkRouting(
            rowCount: Int, offsets: some Collection<Int>, expertIDCount: Int, weights: some Collection<Float>
        ) throws(WireError) {
            guard offsets.count == rowCount + 1 else {
                throw .invalidRouting(.dispatch, .offsetCount(count: offsets.count, rowCount: rowCount))
            }
            var previous = 0
            for (index, offset) in offsets.enumerated() {
                if index == 0 {
                    guard offset == 0 else { throw .invalidRouting(.dispatch, .firstOffset(offset)) }
                } else {
                    guard offset >= previous else {
                        throw .invalidRouting(.dispatch, .decreasingOffset(row: index - 1, offset: previous, next: offset))
                    }
                    guard offset - previous <= WireLimits.maxExpertsPerRow else {
                        throw .invalidRouting(
                            .dispatch,
                            .tooManyExperts(row: index - 1, count: offset - previous, limit: WireLimits.maxExpertsPerRow))
                    }
                }
                previous = offset
            }
            guard previous == expertIDCount, previous == weights.count else {
                throw .invalidRouting(
                    .dispatch, .lengthMismatch(lastOffset: previous, expertIDCount: expertIDCount, weightCount: weights.count))
            }
            for (index, weight) in weights.enumerated() where !weight.isFinite {
                throw .nonFiniteWeight(.dispatch, index: index)
            }
        }
    }

    /// worker → coordinator: for each dispatched row, the routing-weighted sum of the outputs of
    /// the worker's experts for that row (one row per token, not per (token, expert)).
    public struct Combine: Sendable, Equatable {
        public var requestID: RequestID
        public var step: StepIndex
        /// The MoE layer, 0 ... UInt32.max.
        public var layer: LayerIndex
        /// The combined outputs, [rowCount, hiddenSize], same row order as the dispatch.
        public var outputs: HiddenStates
        /// Time the worker spent computing, in microseconds.
        public var computeMicroseconds: UInt64

        public init(
            requestID: RequestID, step: StepIndex, layer: LayerIndex, outputs: HiddenStates,
            computeMicroseconds: UInt64
        ) {
            self.requestID = requestID
            self.step = step
            self.layer = layer
            self.outputs = outputs
            self.computeMicroseconds = computeMicroseconds
        }
    }

    /// Either direction: liveness, with the sender's wall clock.
    public struct Heartbeat: Sendable, Equatable {
        /// Milliseconds since the Unix epoch when sent.
        public var sentUnixMillis: UInt64

        public init(sentUnixMillis: UInt64) { self.sentUnixMillis = sentUnixMillis }
    }

    /// Either direction: a refusal or failure, with what was wrong.
    public struct ErrorReport: Sendable, Equatable {
        /// The class of failure.
        public enum Code: UInt32, Sendable, CaseIterable {
            case badFrame = 1
            case versionMismatch = 2
            case modelMismatch = 3
            case unknownExpert = 4
            case notReady = 5
            case `internal` = 6
            case badRequest = 7
        }

        public var code: Code
        /// One line saying what was wrong and what was expected.
        public var message: String
        /// The request concerned, if any.
        public var requestID: RequestID?
        /// The layer concerned, if any (0 ... UInt32.max).
        public var layer: LayerIndex?

        public init(code: Code, message: String, requestID: RequestID? = nil, layer: LayerIndex? = nil) {
            self.code = code
            self.message = message
            self.requestID = requestID
            self.layer = layer
        }
    }

    /// Either direction: orderly leave.
    public struct Bye: Sendable, Equatable {
        /// Why (for logs), e.g. `shutdown`.
        public var reason: String

        public init(reason: String) { self.reason = reason }
    }

    /// client → coordinator: one generation job.
    public struct GenerateRequest: Sendable, Equatable {
        /// The prompt: text for the coordinator to tokenize, or token ids.
        public enum Prompt: Sendable, Equatable {
            case text(String)
            case tokenIDs([UInt32])
        }

        public var clientRequestID: ClientRequestID
        public var prompt: Prompt
        /// Most tokens to generate, 0 ... UInt32.max.
        public var maxTokens: Int
        /// Sampling temperature, finite and ≥ 0 (0 = greedy).
        public var temperature: Float
        /// Nucleus mass, finite, 0 ... 1.
        public var topP: Float
        /// Keep the k most likely tokens (0 = no limit), 0 ... UInt32.max.
        public var topK: Int
        /// Sampling seed; nil lets the coordinator choose.
        public var seed: UInt64?
        /// Keep generating past the end-of-sequence token.
        public var ignoreEOS: Bool
        /// Top log-probabilities to report per token (0 = none), 0 ... UInt32.max.
        public var logprobs: Int

        public init(
            clientRequestID: ClientRequestID, prompt: Prompt, maxTokens: Int, temperature: Float = 0,
            topP: Float = 1, topK: Int = 0, seed: UInt64? = nil, ignoreEOS: Bool = false, logprobs: Int = 0
        ) {
            self.clientRequestID = clientRequestID
            self.prompt = prompt
            self.maxTokens = maxTokens
            self.temperature = temperature
            self.topP = topP
            self.topK = topK
            self.seed = seed
            self.ignoreEOS = ignoreEOS
            self.logprobs = logprobs
        }
    }

    /// coordinator → client: the finished job.
    public struct GenerateResult: Sendable, Equatable {
        public var clientRequestID: ClientRequestID
        /// The CLI's JSON output for the job, built by the coordinator.
        public var resultJSON: String

        public init(clientRequestID: ClientRequestID, resultJSON: String) {
            self.clientRequestID = clientRequestID
            self.resultJSON = resultJSON
        }
    }
}
