// The engine as a service to front ends (the HTTP API, the CLI): submit a request, receive its
// tokens as they are generated, cancel it, read health and metrics.
public import Tokenization

extension GenerationService {
    /// Renders a conversation with the chat template, no tools and no extra template variables.
    /// - Throws: as `applyChatTemplate(_:tools:addGenerationPrompt:arguments:)`.
    public func applyChatTemplate(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws(SubmitError) -> String {
        try applyChatTemplate(messages, tools: nil, addGenerationPrompt: addGenerationPrompt, arguments: ChatTemplateArguments())
    }

    /// Renders a conversation with the request's template variables and no tools.
    public func applyChatTemplate(
        _ messages: [ChatMessage], addGenerationPrompt: Bool, arguments: ChatTemplateArguments
    ) throws(SubmitError) -> String {
        try applyChatTemplate(messages, tools: nil, addGenerationPrompt: addGenerationPrompt, arguments: arguments)
    }

    /// Renders a conversation with tools and no extra template variables.
    public func applyChatTemplate(
        _ messages: [ChatMessage], tools: [OrderedJSON]?, addGenerationPrompt: Bool
    ) throws(SubmitError) -> String {
        try applyChatTemplate(messages, tools: tools, addGenerationPrompt: addGenerationPrompt, arguments: ChatTemplateArguments())
    }
}

/// How a request ended.
public enum FinishReason: String, Sendable, Codable, Equatable {
    /// An end-of-sequence token or a stop string.
    case stop
    /// max_tokens reached.
    case length
    /// The client went away or cancelled.
    case cancelled
}

/// One generated token, with the text it completes.
public struct TokenEvent: Sendable, Equatable {
    public let tokenID: Int32
    /// The text this token completes: valid UTF-8, possibly empty (a partial character or a
    /// stop-string prefix held back), never including a matched stop string.
    public let text: String
    /// Present when the request asked for logprobs.
    public let logprob: TokenLogprob?

    public init(tokenID: Int32, text: String, logprob: TokenLogprob?) {
        self.tokenID = tokenID
        self.text = text
        self.logprob = logprob
    }
}

/// The end of a request.
public struct FinishEvent: Sendable, Equatable {
    public let reason: FinishReason
    public let promptTokenIDs: [Int32]
    public let completionTokenIDs: [Int32]
    /// Text held back at the end (after the last token event), already stop-trimmed.
    public let trailingText: String
    /// Tokens of this request routed per expert.
    public let expertLoad: ExpertLoad
    /// Seconds from submission to the first step that included the request.
    public let queueSeconds: Double

    public init(
        reason: FinishReason, promptTokenIDs: [Int32], completionTokenIDs: [Int32], trailingText: String,
        expertLoad: ExpertLoad, queueSeconds: Double
    ) {
        self.reason = reason
        self.promptTokenIDs = promptTokenIDs
        self.completionTokenIDs = completionTokenIDs
        self.trailingText = trailingText
        self.expertLoad = expertLoad
        self.queueSeconds = queueSeconds
    }
}

/// What a request's stream yields: tokens, then exactly one finish (or the stream throws a
/// `GenerationError` if the engine failed the request).
public enum GenerationEvent: Sendable, Equatable {
    case token(TokenEvent)
    case finished(FinishEvent)
}

/// Why a request was not accepted; front ends map these to HTTP statuses.
public enum SubmitError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The request is invalid; `field` names the parameter (HTTP 400).
    case invalid(field: String, message: String)
    /// The waiting queue is full (HTTP 429).
    case queueFull(String)
    /// The engine cannot take requests now: workers missing, KV memory cannot ever hold it,
    /// shutting down (HTTP 503).
    case unavailable(String)

    public var description: String {
        switch self {
        case .invalid(let field, let message): "\(field): \(message)"
        case .queueFull(let message), .unavailable(let message): message
        }
    }
}

/// Whether the engine can serve.
public enum HealthStatus: Sendable, Equatable {
    /// Serving on every configured worker.
    case ready
    /// Serving, on fewer workers than configured (the reason says which are missing).
    case degraded(String)
    /// Not serving yet (workers still registering) or any more (shutting down).
    case notReady(reason: String)
    /// Some experts have no live worker: running requests wait (bounded) for one to join; new
    /// requests are refused.
    case stalled(reason: String)

    /// Whether the engine runs steps: a stalled step waits inside for its experts.
    public var runsSteps: Bool {
        switch self {
        case .ready, .degraded, .stalled: true
        case .notReady: false
        }
    }

    /// Whether new requests are accepted.
    public var acceptsRequests: Bool {
        switch self {
        case .ready, .degraded: true
        case .notReady, .stalled: false
        }
    }
}

/// A fixed-bucket histogram of seconds, or of a count (requests per step).
public struct Histogram: Sendable, Equatable {
    /// Upper bounds of the buckets, ascending (the +Inf bucket is implicit).
    public let upperBounds: [Double]
    /// Observations per bucket (not cumulative); one more entry than `upperBounds` (+Inf).
    public private(set) var bucketCounts: [UInt64]
    public private(set) var sum: Double = 0
    public private(set) var count: UInt64 = 0

    public init(upperBounds: [Double]) {
        self.upperBounds = upperBounds
        bucketCounts = Array(repeating: 0, count: upperBounds.count + 1)
    }

    public mutating func observe(_ value: Double) {
        let index = upperBounds.firstIndex { value <= $0 } ?? upperBounds.count
        bucketCounts[index] += 1
        sum += value
        count += 1
    }

    /// Latency buckets from 1 ms to 60 s.
    public static let latencyBuckets: [Double] = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
    ]

    /// Requests-per-step buckets: 1 (a step of one request) up to 256.
    public static let batchBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256]
}

/// A snapshot of the engine's counters for /metrics.
public struct EngineMetrics: Sendable, Equatable {
    public var runningRequests = 0
    public var waitingRequests = 0
    public var promptTokensTotal: UInt64 = 0
    public var generationTokensTotal: UInt64 = 0
    /// Finished requests by reason (`stop`, `length`, `cancelled`, `error`).
    public var finishedRequests: [String: UInt64] = [:]
    /// KV cache tokens reserved ÷ capacity, 0...1.
    public var kvCacheUsage: Double = 0
    public var requestLatency = Histogram(upperBounds: Histogram.latencyBuckets)
    public var timeToFirstToken = Histogram(upperBounds: Histogram.latencyBuckets)
    public var interTokenLatency = Histogram(upperBounds: Histogram.latencyBuckets)
    public var queueTime = Histogram(upperBounds: Histogram.latencyBuckets)
    /// Requests running in each step the engine ran: how many sequences its batches held (tests
    /// check with it that concurrent requests really shared steps).
    public var stepRequests = Histogram(upperBounds: Histogram.batchBuckets)
    /// Tokens routed per expert since start, `[layer][expert]`.
    public var expertTokens: [[UInt64]] = []
    /// `[layer]`: balancedness (mean ÷ max) over the layer's experts since start.
    public var layerBalancedness: [Double] = []
    /// The MoE layers' real numbers, in the order of `layerBalancedness` and `layerWorkerBalancedness`.
    public var moeLayers: [Int] = []
    /// `[layer]`: balancedness over the workers' (token, expert) rows since start; empty without workers.
    public var layerWorkerBalancedness: [Double] = []
    /// Per worker, in placement order.
    public var workers: [WorkerMetrics] = []
    /// Workers up and lost, failovers, retried and hedged dispatches; nil without workers.
    public var cluster: ClusterMetrics?

    public init() {}
}

/// One worker's dispatches since start, for /metrics.
public struct WorkerMetrics: Sendable, Equatable {
    public var name: String
    /// Sums over all layers.
    public var load: WorkerLayerLoad
    /// Seconds from sending a DISPATCH to receiving its COMBINE.
    public var roundTripSeconds: Histogram
    /// Compute seconds the worker reported per dispatch.
    public var computeSeconds: Histogram

    public init(name: String, load: WorkerLayerLoad, roundTripSeconds: Histogram, computeSeconds: Histogram) {
        self.name = name
        self.load = load
        self.roundTripSeconds = roundTripSeconds
        self.computeSeconds = computeSeconds
    }
}

/// One message of a chat conversation.
public struct ChatMessage: Sendable, Equatable {
    /// `system`, `user`, `assistant` or `tool`.
    public let role: String
    public let content: String
    /// Further members the chat template sees after `role` and `content`, in the client's order: an
    /// assistant's `tool_calls` (arguments as objects), a tool message's `tool_call_id`, a `name`.
    public var templateMembers: [OrderedJSON.Member]

    public init(role: String, content: String, templateMembers: [OrderedJSON.Member] = []) {
        self.role = role
        self.content = content
        self.templateMembers = templateMembers
    }

    /// The message as the chat template sees it: `{"role", "content", ...templateMembers}`.
    public var templateValue: OrderedJSON {
        .object([.init("role", .string(role)), .init("content", .string(content))] + templateMembers)
    }
}

/// The engine as front ends see it. Implementations are thread-safe.
public protocol GenerationService: Sendable {
    /// The model's name as served (the `model` field of responses).
    var modelName: String { get }
    /// Prompt + completion tokens one request may hold.
    var contextLength: Int { get }
    /// The checkpoint's tokenizer (chat templates, token counts).
    var tokenizer: Tokenizer { get }
    func health() -> HealthStatus
    /// Renders a conversation into a prompt with the checkpoint's chat template
    /// (tokenizer_config.json `chat_template`) and the request's template variables (`chat_template_kwargs`).
    /// - Throws: `SubmitError.invalid(field: "messages", …)` when there is no template or it cannot be rendered.
    /// - Parameters:
    ///   - tools: the request's `tools`, passed to the template as `tools` (nil passes None).
    ///   - arguments: the request's `chat_template_kwargs`.
    func applyChatTemplate(
        _ messages: [ChatMessage], tools: [OrderedJSON]?, addGenerationPrompt: Bool, arguments: ChatTemplateArguments
    ) throws(SubmitError) -> String
    /// Accepts a request or refuses it at once. The stream ends after `.finished`; ending the
    /// iteration early (or `onTermination`) cancels the request and frees its KV memory.
    func submit(_ request: GenerationRequest) throws(SubmitError) -> AsyncThrowingStream<GenerationEvent, any Error>
    func metrics() -> EngineMetrics
    /// The expert-load report: since start, and over a sliding window of `window` (`60s`, `5m`,
    /// a number of seconds; nil for the default).
    /// - Throws: `SubmitError.invalid(field: "window", …)` for a window that cannot be parsed or is out of range.
    func expertLoad(window: String?) throws(SubmitError) -> ExpertLoadReport
    /// Starts recording per-step routing (discarding an earlier recording); returns its status.
    func startExpertLoadRecording() -> ExpertLoadRecording
    /// Stops recording; returns its status. The recording stays readable.
    func stopExpertLoadRecording() -> ExpertLoadRecording
    /// The current or last recording, with its steps.
    func expertLoadRecording() -> ExpertLoadRecording
    /// The placement experts are dispatched by; nil when they are computed in-process.
    func placement() -> Placement?
    /// Applies a placement given as placement-file JSON (untrusted bytes) between steps, once the
    /// workers hold their new experts; returns the placement in effect afterwards.
    func applyPlacement(json: [UInt8]) async -> Result<Placement, PlacementChangeError>
}

extension GenerationService {
    public func placement() -> Placement? { nil }
    public func applyPlacement(json: [UInt8]) async -> Result<Placement, PlacementChangeError> {
        .failure(.unsupported("this server has no placement to change"))
    }
}

/// Why a placement change was not applied; front ends map these to HTTP statuses.
public enum PlacementChangeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The placement is malformed or does not fit the running cluster (HTTP 400).
    case invalid(String)
    /// There is no placement: the experts are computed in-process (HTTP 409).
    case unsupported(String)
    /// The workers did not load the new experts, or the server stopped (HTTP 503).
    case failed(String)

    public var description: String {
        switch self {
        case .invalid(let message), .unsupported(let message), .failed(let message): message
        }
    }
}
