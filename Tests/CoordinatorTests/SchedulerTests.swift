import Foundation
import Models
import Synchronization
import TestSupport
import Tensors
import Testing
import Tokenization

@testable import Coordinator

/// Expert-layer calls the engine may make; tests use it to hold the engine at a known point
/// instead of racing it. Nil means unlimited.
final class ExpertPermits: Sendable {
    private let remaining = Mutex<Int?>(nil)

    func set(_ count: Int?) { remaining.withLock { $0 = count } }

    /// Permits left (nil: unlimited).
    var available: Int? { remaining.withLock { $0 } }

    private let stops = Mutex(0)
    /// How many times the engine has stopped for want of a permit. When this rises and no permit
    /// was given since, the engine is stopped inside an expert-layer call of a known step.
    var timesHeld: Int { stops.withLock { $0 } }

    /// Blocks the engine thread until a permit is available, then takes it.
    func take() {
        var counted = false
        while true {
            let taken = remaining.withLock { (count: inout Int?) -> Bool in
                guard let left = count else { return true }
                guard left > 0 else { return false }
                count = left - 1
                return true
            }
            if taken { return }
            if !counted {
                stops.withLock { $0 += 1 }
                counted = true
            }
            Thread.sleep(forTimeInterval: 0.001)
        }
    }

    /// Waits (bounded generously) until the engine has stopped more than `times` times; returns
    /// the new count, or nil when it never stopped again (it ran out of work).
    func waitUntilHeld(after times: Int) async throws -> Int? {
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            let now = timesHeld
            if now > times { return now }
            try await Task.sleep(for: .milliseconds(1))
        }
        return nil
    }
}

/// In-process experts that wait for a permit before each MoE layer.
struct PermittedExperts: ExpertExecutor {
    let local: LocalExperts
    let permits: ExpertPermits

    func computeExperts(layer: LayerIndex, hidden: [Float], routing: RoutingDecision) throws(GenerationError) -> [Float] {
        permits.take()
        return try local.computeExperts(layer: layer, hidden: hidden, routing: routing)
    }

    var workerSummaries: [WorkerSummary] { local.workerSummaries }
}

/// A scheduler over a committed fixture model, its experts in-process, run on its own thread.
final class RunningScheduler: Sendable {
    let scheduler: Scheduler
    let permits = ExpertPermits()
    private let done = DispatchSemaphore(value: 0)

    init(limits: SchedulerLimits = SchedulerLimits()) throws {
        let directory = TestPaths.fixtures.appendingPathComponent("models/top2")
        let checkpoint = try Checkpoint(directory: directory)
        let engine = GenerationEngine(
            model: try DecoderStack(checkpoint: checkpoint), tokenizer: try Tokenizer(directory: directory))
        let store = try ExpertStore(
            checkpoint: checkpoint,
            experts: (0..<checkpoint.shape.layerCount).flatMap { layer in
                (0..<checkpoint.shape.expertCount).map { LayerExpert(layer: LayerIndex(layer), expert: ExpertID($0)) }
            })
        scheduler = Scheduler(engine: engine, modelName: "top2", limits: limits)
        let thread = Thread { [scheduler, done, permits] in
            var experts = PermittedExperts(local: LocalExperts(store: store), permits: permits)
            scheduler.run(executor: &experts)
            done.signal()
        }
        thread.start()
        // The engine publishes its health on its first loop.
        let deadline = Date().addingTimeInterval(30)
        while scheduler.health() != .ready && Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
    }

    deinit {
        permits.set(nil)
        scheduler.stop()
        done.wait()
    }
}

/// Collects a request's tokens and finish event.
func collect(_ stream: AsyncThrowingStream<GenerationEvent, any Error>) async throws -> (tokens: [Int32], text: String, finish: FinishEvent?) {
    var tokens: [Int32] = []
    var text = ""
    var finish: FinishEvent?
    for try await event in stream {
        switch event {
        case .token(let token):
            tokens.append(token.tokenID)
            text += token.text
        case .finished(let event):
            finish = event
            text += event.trailingText
        }
    }
    return (tokens, text, finish)
}

@Suite("Scheduler: continuous batching", .serialized)
struct SchedulerTests {
    static let prompts = [
        "Once upon a time", "The quick brown fox", "In a small village by the sea, there lived",
        "1, 2, 3, 4,", "Naïve café", "Hello", "A", "Experts and routers and tokens",
        "It was the best of times, it was the worst of times,", "Zebra", "🙂 smile", "The end",
    ]

    @Test("greedy tokens of 12 concurrent requests equal each request run alone")
    func batchInvariance() async throws {
        let running = try RunningScheduler(limits: SchedulerLimits(maxTokensPerStep: 24))
        var solo: [[Int32]] = []
        for prompt in Self.prompts {
            let request = GenerationRequest(prompt: .text(prompt), maxTokens: 10, sampling: .init(temperature: 0), ignoreEOS: true)
            solo.append(try await collect(running.scheduler.submit(request)).tokens)
        }
        // Hold the engine at its expert layers while all requests arrive, then let it go one
        // expert-layer call at a time: each time it stops again, the requests of the step it is in
        // are published, so the test sees that they really ran together (a scheduler running them
        // one at a time would still give the solo tokens).
        running.permits.set(0)
        var mostRunning = 0
        let together = try await withThrowingTaskGroup(of: (Int, [Int32]).self) { group in
            for (index, prompt) in Self.prompts.enumerated() {
                let request = GenerationRequest(prompt: .text(prompt), maxTokens: 10, sampling: .init(temperature: 0), ignoreEOS: true)
                let stream = try running.scheduler.submit(request)
                group.addTask { (index, try await collect(stream).tokens) }
            }
            var stops = 0
            while mostRunning < 2, let next = try await running.permits.waitUntilHeld(after: stops) {
                stops = next
                mostRunning = max(mostRunning, running.scheduler.metrics().runningRequests)
                running.permits.set(1)
            }
            running.permits.set(nil)
            var results = [[Int32]](repeating: [], count: Self.prompts.count)
            for try await (index, tokens) in group { results[index] = tokens }
            return results
        }
        #expect(mostRunning >= 2, "the requests never shared a step: at most \(mostRunning) ran in one")
        for index in Self.prompts.indices {
            #expect(together[index] == solo[index], "prompt \(index): \(Self.prompts[index])")
            #expect(solo[index].count == 10)
        }
    }

    @Test("a request through the scheduler gives the single-sequence engine's tokens and expert load")
    func equalsEngine() async throws {
        let running = try RunningScheduler()
        let request = GenerationRequest(
            prompt: .text("Once upon a time"), maxTokens: 8, sampling: .init(temperature: 0), ignoreEOS: true)
        let (tokens, _, finish) = try await collect(running.scheduler.submit(request))
        let directory = TestPaths.fixtures.appendingPathComponent("models/top2")
        let checkpoint = try Checkpoint(directory: directory)
        let engine = GenerationEngine(model: try DecoderStack(checkpoint: checkpoint), tokenizer: try Tokenizer(directory: directory))
        var local = LocalExperts(store: try ExpertStore(
            checkpoint: checkpoint,
            experts: (0..<3).flatMap { layer in (0..<8).map { LayerExpert(layer: LayerIndex(layer), expert: ExpertID($0)) } }))
        let reference = try engine.generate(request, experts: &local)
        #expect(tokens == reference.completionTokenIDs)
        #expect(finish?.expertLoad == reference.expertLoad)
        #expect(finish?.reason == .length)
    }

    @Test("a cancelled stream frees its KV memory and other requests finish")
    func cancellation() async throws {
        let running = try RunningScheduler()
        // The engine may run only the prefill and 5 decode steps (3 MoE layers each) until the
        // client is gone, so the request cannot finish on its own before it is cancelled.
        running.permits.set(3 * 6)
        let long = GenerationRequest(prompt: .text("Cancel me"), maxTokens: 200, sampling: .init(temperature: 0), ignoreEOS: true)
        // The stream is only referenced inside `readTokens`, so returning from it drops the
        // stream: that is what a disconnecting client does.
        func readTokens(_ stream: AsyncThrowingStream<GenerationEvent, any Error>, count: Int) async throws -> Int {
            var seen = 0
            for try await event in stream {
                if case .token = event { seen += 1 }
                if seen == count { break }
            }
            return seen
        }
        #expect(try await readTokens(running.scheduler.submit(long), count: 3) == 3)
        running.permits.set(nil)
        let short = GenerationRequest(prompt: .text("Still here"), maxTokens: 4, sampling: .init(temperature: 0), ignoreEOS: true)
        let (tokens, _, _) = try await collect(running.scheduler.submit(short))
        #expect(tokens.count == 4)
        // The cancelled sequence leaves at the next step boundary.
        let deadline = Date().addingTimeInterval(30)
        while running.scheduler.metrics().kvCacheUsage > 0 && Date() < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(running.scheduler.metrics().kvCacheUsage == 0)
        #expect(running.scheduler.metrics().finishedRequests["cancelled"] == 1)
    }

    @Test("stop strings end generation and are cut from the text")
    func stopStrings() async throws {
        let running = try RunningScheduler()
        let plain = GenerationRequest(prompt: .text("Once upon a time"), maxTokens: 12, sampling: .init(temperature: 0), ignoreEOS: true)
        let full = try await collect(running.scheduler.submit(plain)).text
        let scalars = Array(full.unicodeScalars)
        try #require(scalars.count >= 6)
        let stop = String(String.UnicodeScalarView(scalars[3..<5]))
        var stopped = plain
        stopped.stop = [stop]
        let result = try await collect(running.scheduler.submit(stopped))
        #expect(result.finish?.reason == .stop)
        #expect(!result.text.contains(stop))
        #expect(full.hasPrefix(result.text))
    }

    @Test("invalid requests are refused at once naming the field; a full queue is refused as such")
    func refusals() async throws {
        let running = try RunningScheduler(limits: SchedulerLimits(maxRunningSequences: 1, maxWaitingRequests: 1, kvCacheTokens: 4096, maxTokensPerStep: 64))
        #expect(throws: SubmitError.invalid(field: "max_tokens", message: "max_tokens is 0, but must be at least 1")) {
            _ = try running.scheduler.submit(GenerationRequest(prompt: .text("x"), maxTokens: 0))
        }
        do {
            _ = try running.scheduler.submit(GenerationRequest(prompt: .text("x"), maxTokens: 5000))
            Issue.record("a request beyond the context must be refused")
        } catch {
            if case .invalid(let field, _) = error { #expect(field == "max_tokens") } else { Issue.record("\(error)") }
        }
        let long = GenerationRequest(prompt: .text("busy"), maxTokens: 200, sampling: .init(temperature: 0), ignoreEOS: true)
        // Hold the engine at the first request's first MoE layer, so that it is still running when the
        // others arrive however slow or fast this machine is at the moment.
        running.permits.set(0)
        let first = try running.scheduler.submit(long)
        let deadline = Date().addingTimeInterval(30)
        while running.scheduler.metrics().runningRequests < 1 && Date() < deadline { try await Task.sleep(for: .milliseconds(2)) }
        let second = try running.scheduler.submit(long)
        #expect(throws: SubmitError.self) { _ = try running.scheduler.submit(long) }
        _ = (first, second)
    }
}
