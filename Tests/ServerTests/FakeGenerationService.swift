// A scripted engine for the HTTP tests: deterministic tokens, optionally slow, failing mid-way or
// refusing requests, and recording what it was asked and whether streams were cancelled.
import Coordinator
import Foundation
import Synchronization
import Tokenization

/// A `GenerationService` whose output depends only on the request.
///
/// Token `i` of a request is `words[(i + seed) % words.count]` (seed 0 when none is given), with
/// token id `firstTokenID + that index`; a word equal to a stop string ends the request with
/// `.stop` and is not sent. Otherwise the request ends with `.length` after `maxTokens` tokens.
///
/// Made with a `script` (and a real tokenizer), it generates the script's ids instead, each with
/// the text the engine's streaming decoder gives it (special tokens skipped), ending with `.stop`
/// after an end-of-sequence id (`stopTokenIDs`) or `.length`.
final class FakeGenerationService: GenerationService {
    static let words = [" alpha", " beta", " gamma", " delta"]
    static let firstTokenID: Int32 = 10
    /// Shared, built once: training a tokenizer takes a moment.
    static let trainedFiles: (tokenizerJSON: Data, tokenizerConfigJSON: Data) = {
        do {
            return try TokenizerTrainer.sentencePieceBPE(vocabularySize: 400)
        } catch {
            preconditionFailure("training the test tokenizer failed: \(error)")
        }
    }()
    static let sharedTokenizer: Tokenizer = tokenizer(chatTemplate: nil)

    /// The trained tokenizer, with `chatTemplate` as its chat template when given.
    static func tokenizer(chatTemplate: String?) -> Tokenizer {
        do {
            return try Tokenizer(
                tokenizerJSON: trainedFiles.tokenizerJSON, tokenizerConfigJSON: trainedFiles.tokenizerConfigJSON,
                chatTemplateJinja: chatTemplate)
        } catch {
            preconditionFailure("loading the test tokenizer failed: \(error)")
        }
    }

    struct State {
        var health: HealthStatus = .ready
        var refusal: SubmitError?
        /// Refuse with `queueFull` once this many requests were accepted.
        var acceptLimit: Int?
        var submitted: [GenerationRequest] = []
        var cancelledStreams = 0
        var metrics = EngineMetrics()
        /// The expert-load accounting the load routes report (2 layers × 4 experts), at `loadTime`.
        var load = ExpertLoadAccounting(layerCount: 2, expertCount: 4)
        var loadTime: Duration = .seconds(100)
    }

    let modelName = "fake-moe"
    let contextLength: Int
    let tokenizer: Tokenizer
    /// Pause before each token.
    let tokenDelay: Duration
    /// Throw `GenerationError.expertsFailed` after this many tokens.
    let failAfterTokens: Int?
    let state = Mutex(State())

    /// When set, every chat template render waits at this gate.
    let renderGate: RenderGate?
    /// The texts the fake's tokens carry, in turn (`words` unless a test scripts its own).
    let script: [String]
    /// The completion ids every request generates, when set (instead of `script`'s texts).
    let idScript: [Int32]?
    /// Ids that end an id-scripted completion with `.stop`.
    let stopTokenIDs: Set<Int32>
    /// Whether chats are rendered with the tokenizer's real chat template rather than the fake's tags.
    let rendersTemplate: Bool
    /// The time the tokenizer's template reads with `strftime_now`.
    let renderDate: Date

    /// - Parameters:
    ///   - chatTemplate: a real chat template to render chats with (the fake's tags when nil).
    ///   - tokenizer: a tokenizer to use, with its own chat template, instead of the trained one.
    ///   - script: the texts of the generated tokens, in turn.
    init(
        contextLength: Int = 256, tokenDelay: Duration = .zero, failAfterTokens: Int? = nil,
        renderGate: RenderGate? = nil, chatTemplate: String? = nil, tokenizer: Tokenizer? = nil,
        script: [String] = FakeGenerationService.words
    ) {
        self.contextLength = contextLength
        self.tokenizer = tokenizer ?? (chatTemplate == nil ? Self.sharedTokenizer : Self.tokenizer(chatTemplate: chatTemplate))
        self.rendersTemplate = chatTemplate != nil || tokenizer != nil
        self.script = script
        self.tokenDelay = tokenDelay
        self.failAfterTokens = failAfterTokens
        self.renderGate = renderGate
        self.idScript = nil
        self.stopTokenIDs = []
        self.renderDate = Date()
    }

    /// A fake that renders chats with `tokenizer`'s chat template (its `strftime_now` at `renderDate`)
    /// and generates `script`.
    init(
        tokenizer: Tokenizer, script: [Int32], stopTokenIDs: Set<Int32>, renderDate: Date = Date(),
        contextLength: Int = 4096
    ) {
        self.contextLength = contextLength
        self.tokenizer = tokenizer
        self.tokenDelay = .zero
        self.failAfterTokens = nil
        self.renderGate = nil
        self.script = Self.words
        self.idScript = script
        self.stopTokenIDs = stopTokenIDs
        self.rendersTemplate = true
        self.renderDate = renderDate
    }

    var submitted: [GenerationRequest] { state.withLock { $0.submitted } }
    var cancelledStreams: Int { state.withLock { $0.cancelledStreams } }

    func setHealth(_ health: HealthStatus) { state.withLock { $0.health = health } }
    func setRefusal(_ refusal: SubmitError?) { state.withLock { $0.refusal = refusal } }
    func setAcceptLimit(_ limit: Int?) { state.withLock { $0.acceptLimit = limit } }
    func setMetrics(_ metrics: EngineMetrics) { state.withLock { $0.metrics = metrics } }

    func health() -> HealthStatus { state.withLock { $0.health } }

    /// Feeds the fake's expert-load accounting.
    func recordLoad(_ step: StepLoad, at time: Duration) {
        state.withLock {
            $0.load.record(step, at: time)
            $0.loadTime = time
        }
    }

    func expertLoad(window: String?) throws(SubmitError) -> ExpertLoadReport {
        try state.withLock { (state: inout State) throws(SubmitError) -> ExpertLoadReport in
            do throws(LoadWindowError) {
                let seconds = try state.load.checkedWindowSeconds(window ?? "60s")
                return state.load.report(windowSeconds: seconds, at: state.loadTime)
            } catch {
                throw .invalid(field: "window", message: error.description)
            }
        }
    }

    func startExpertLoadRecording() -> ExpertLoadRecording {
        state.withLock {
            $0.load.startRecording(at: $0.loadTime)
            return $0.load.recordingStatus
        }
    }

    func stopExpertLoadRecording() -> ExpertLoadRecording {
        state.withLock {
            $0.load.stopRecording(at: $0.loadTime)
            return $0.load.recordingStatus
        }
    }

    func expertLoadRecording() -> ExpertLoadRecording { state.withLock { $0.load.currentRecording } }
    func metrics() -> EngineMetrics { state.withLock { $0.metrics } }

    /// The fake's tags (`<|role|>content` lines, then `<|name|>value` for each template argument,
    /// whose value is its JSON text), or the tokenizer's own template.
    func applyChatTemplate(
        _ messages: [ChatMessage], tools: [OrderedJSON]?, addGenerationPrompt: Bool, arguments: ChatTemplateArguments
    ) throws(SubmitError) -> String {
        renderGate?.pass()
        guard rendersTemplate else {
            let variables = arguments.names.map { name in "<|\(name)|>\(arguments.values[name].map(jsonText) ?? "")\n" }
            return messages.map { "<|\($0.role)|>\($0.content)\n" }.joined() + variables.joined()
                + (addGenerationPrompt ? "<|assistant|>" : "")
        }
        do {
            return try tokenizer.applyChatTemplate(
                conversation: messages.map(\.templateValue), tools: tools, addGenerationPrompt: addGenerationPrompt,
                arguments: arguments, now: renderDate)
        } catch {
            throw .invalid(field: "messages", message: "\(error)")
        }
    }

    /// The events of a scripted request: the engine's text for each id, then the finish.
    func scriptedEvents(_ script: [Int32], for request: GenerationRequest, promptTokenIDs: [Int32]) -> [GenerationEvent] {
        var decoder = tokenizer.makeStreamingDecoder(skipSpecialTokens: true)
        var events: [GenerationEvent] = []
        var completion: [Int32] = []
        var reason = FinishReason.length
        // As the engine, the end-of-sequence token is reported too (its text is empty: special tokens are skipped).
        for id in script.prefix(request.maxTokens) {
            completion.append(id)
            events.append(.token(TokenEvent(tokenID: id, text: decoder.append(id), logprob: nil)))
            if stopTokenIDs.contains(id) {
                reason = .stop
                break
            }
        }
        events.append(
            .finished(
                FinishEvent(
                    reason: reason, promptTokenIDs: promptTokenIDs, completionTokenIDs: completion,
                    trailingText: decoder.finish(), expertLoad: ExpertLoad(layerCount: 1, expertCount: 4),
                    queueSeconds: 0)))
        return events
    }

    /// The logits the fake pretends to have sampled token `chosen` from: lower ids are likelier.
    static func logits(favouring chosen: Int32) -> [Float] {
        (0..<32).map { $0 == Int(chosen) ? 5 : -Float($0) * 0.25 }
    }

    /// The events of a request, without delays or failures.
    static func events(
        for request: GenerationRequest, promptTokenIDs: [Int32], words: [String] = FakeGenerationService.words
    ) -> [GenerationEvent] {
        var events: [GenerationEvent] = []
        var completion: [Int32] = []
        var reason = FinishReason.length
        let offset = Int((request.sampling.seed ?? 0) % UInt64(words.count))
        for position in 0..<request.maxTokens {
            let wordIndex = (position + offset) % words.count
            let word = words[wordIndex]
            let id = firstTokenID + Int32(wordIndex)
            if request.stop.contains(where: { word.contains($0) }) {
                reason = .stop
                break
            }
            completion.append(id)
            let logprob =
                request.logprobs > 0
                ? TokenLogprob(chosen: id, logits: logits(favouring: id), top: request.logprobs) : nil
            events.append(.token(TokenEvent(tokenID: id, text: word, logprob: logprob)))
        }
        events.append(
            .finished(
                FinishEvent(
                    reason: reason, promptTokenIDs: promptTokenIDs, completionTokenIDs: completion, trailingText: "",
                    expertLoad: ExpertLoad(layerCount: 1, expertCount: 4), queueSeconds: 0)))
        return events
    }

    func submit(_ request: GenerationRequest) throws(SubmitError) -> AsyncThrowingStream<GenerationEvent, any Error> {
        try state.withLock { state throws(SubmitError) in
            if let refusal = state.refusal { throw refusal }
            if let limit = state.acceptLimit, state.submitted.count >= limit {
                throw .queueFull("the queue is full after \(limit) requests")
            }
            state.submitted.append(request)
        }
        let promptIDs: [Int32]
        switch request.prompt {
        case .text(let text): promptIDs = tokenizer.encode(text)
        case .tokenIDs(let ids): promptIDs = ids
        }
        let events =
            idScript.map { scriptedEvents($0, for: request, promptTokenIDs: promptIDs) }
            ?? Self.events(for: request, promptTokenIDs: promptIDs, words: script)
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: GenerationEvent.self)
        continuation.onTermination = { [self] termination in
            if case .cancelled = termination { self.state.withLock { $0.cancelledStreams += 1 } }
        }
        let delay = tokenDelay
        let failAfter = failAfterTokens
        // The fake's producer, standing in for the engine's scheduler; it stops when the stream
        // is terminated (a yield returns `.terminated`) or cancelled.
        Task {
            for (index, event) in events.enumerated() {
                if delay > .zero {
                    do { try await Task.sleep(for: delay) } catch { return }
                }
                if let failAfter, index == failAfter {
                    continuation.finish(throwing: GenerationError.expertsFailed("worker w1 timed out on layer 0"))
                    return
                }
                if case .terminated = continuation.yield(event) { return }
            }
            continuation.finish()
        }
        return stream
    }
}

/// Blocks the threads that pass it until it is opened, as a slow tokenization or template render
/// would; counts those held. A held thread goes on by itself after 30 s, so a failing test cannot
/// hang the test process.
final class RenderGate: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private let counts = Mutex((held: 0, entered: 0))

    /// Threads waiting at the gate now.
    var held: Int { counts.withLock { $0.held } }
    /// Threads that reached the gate so far.
    var entered: Int { counts.withLock { $0.entered } }

    /// Waits until the gate lets this thread through.
    func pass() {
        counts.withLock {
            $0.held += 1
            $0.entered += 1
        }
        _ = semaphore.wait(timeout: .now() + 30)
        counts.withLock { $0.held -= 1 }
    }

    /// Lets `count` waiting (or future) threads through.
    func open(count: Int) {
        for _ in 0..<count { semaphore.signal() }
    }
}

/// A JSON value's text, for the fake's rendering of template arguments.
private func jsonText(_ value: JSONValue) -> String {
    switch value {
    case .null: "null"
    case .bool(let flag): flag ? "true" : "false"
    case .number(let number): number.rounded() == number && abs(number) < 1e15 ? String(Int(number)) : String(number)
    case .string(let text): "\"\(text)\""
    case .array(let items): "[" + items.map(jsonText).joined(separator: ",") + "]"
    case .object(let members): "{" + members.keys.sorted().map { "\"\($0)\":" + jsonText(members[$0]!) }.joined(separator: ",") + "}"
    }
}
