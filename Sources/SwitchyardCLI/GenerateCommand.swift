import ArgumentParser
import Coordinator
import Foundation
import Logging
import Models
import Server
import Tensors
import Transport
import Tokenization

/// `switchyard generate`: run one generation job.
struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text from a prompt, with the experts in-process, on spawned workers, or on a running cluster.",
        discussion: """
            --spawn-workers N (default 0) starts a coordinator in this process and N worker processes on \
            loopback, and stops them at the end; 0 computes the experts in-process. --server URL sends the \
            job to a running `switchyard serve` over its HTTP API (streaming the text as it comes); \
            --coordinator ENDPOINT sends it over the coordinator's ZeroMQ socket, with a heartbeat every second: \
            it fails when nothing answers within --connect-timeout, when 5 heartbeats in a row go unanswered, or \
            when the coordinator restarted and lost the job. Without --json the text is \
            printed as it is generated, then a table of tokens routed per expert; with --json one JSON object \
            is printed (with --server: the server's /v1/completions response).
            """
    )

    @Option(help: "The model: a checkpoint directory, a Hub id ORG/NAME in the local Hugging Face cache, or a models--ORG--NAME cache folder. Not needed with --coordinator.")
    var model: String?

    @Option(help: "The prompt text (tokenized with the checkpoint's tokenizer).")
    var prompt: String?

    @Option(name: .customLong("prompt-token-ids"), help: "The prompt as comma-separated token ids, e.g. 1,415,2936.")
    var promptTokenIDs: String?

    @Option(name: .customLong("max-tokens"), help: "The number of tokens to generate.")
    var maxTokens: Int = 64

    @Option(help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 1

    @Option(name: .customLong("top-p"), help: "Nucleus sampling: keep the most likely tokens up to this probability mass, (0, 1].")
    var topP: Float = 1

    @Option(name: .customLong("top-k"), help: "Keep only the K most likely tokens; 0 keeps all.")
    var topK: Int = 0

    @Option(help: "Random seed: the same seed gives the same tokens.")
    var seed: UInt64?

    @Flag(name: .customLong("ignore-eos"), help: "Keep generating after the end-of-sequence token.")
    var ignoreEOS = false

    @Option(help: "Report the log-probabilities of the K most likely tokens at each step (0-20).")
    var logprobs: Int = 0

    @Option(name: .customLong("spawn-workers"), help: "Worker processes to start on loopback; 0 computes the experts in-process.")
    var spawnWorkers: Int = 0

    @OptionGroup(title: "Worker faults (with --spawn-workers)") var liveness: LivenessOptions

    @Option(help: "Send the job to a running coordinator's ZeroMQ endpoint (switchyard serve --bind) instead.")
    var coordinator: String?

    @Option(
        name: .customLong("connect-timeout"),
        help: "With --coordinator: seconds for the coordinator to answer at all before giving up.")
    var connectTimeout: Double = 10

    @OptionGroup(title: "Security (with --coordinator)") var security: ClientSecurityOptions

    @Option(help: "With --coordinator: seconds to wait for the result.")
    var timeout: Double = 3600

    @Option(help: "Send the job to a running server's HTTP API, e.g. http://127.0.0.1:8080.")
    var server: String?

    @OptionGroup var tls: ClientTLSOptions

    @OptionGroup var auth: ClientAPIKeyOptions

    @Option(help: "Stop generating at this text (repeatable); the text is cut before it.")
    var stop: [String] = []

    @Option(help: "A placement file for --spawn-workers (see `switchyard serve --help`).")
    var placement: String?

    @Flag(help: "Print one JSON object with token ids, text, logprobs, expert load, workers and timing.")
    var json = false

    @Option(help: "Threads for the matrix products in this process (results do not depend on it). Default: every core.")
    var threads: Int?

    @Option(
        name: .customLong("worker-threads"),
        help: "With --spawn-workers: threads of each spawned worker. Default: --threads (or every core).")
    var workerThreads: Int?

    @OptionGroup var numerics: NumericsOptions

    @Option(name: .customLong("log-level"), help: ArgumentHelp(Logger.Level.help))
    var logLevel: Logger.Level = .warning

    @Option(name: .customLong("log-format"), help: ArgumentHelp(LogFormat.help))
    var logFormat: LogFormat = .text

    func validate() throws {
        if tls.caFile != nil, server == nil { throw ValidationError("--ca applies to --server https://…; give --server or drop --ca") }
        if auth.apiKey != nil || auth.apiKeyFile != nil, server == nil {
            throw ValidationError("--api-key and --api-key-file apply to --server; give --server or drop them")
        }
        guard (prompt == nil) != (promptTokenIDs == nil) else {
            throw ValidationError("give exactly one of --prompt and --prompt-token-ids")
        }
        if coordinator != nil && server != nil {
            throw ValidationError("give at most one of --coordinator and --server")
        }
        if coordinator == nil, server == nil, model == nil {
            throw ValidationError("--model is required unless --coordinator or --server is given")
        }
        for (name, value) in [("--connect-timeout", connectTimeout), ("--timeout", timeout)]
        where !(value > 0 && value <= 1e9) {
            throw ValidationError("\(name) is \(value), but must be a positive number of seconds")
        }
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens is \(maxTokens), but must be at least 1") }
        guard spawnWorkers >= 0 else { throw ValidationError("--spawn-workers is \(spawnWorkers), but must be 0 or more") }
        if liveness.verifyFraction > 0, coordinator != nil || server != nil || (spawnWorkers == 0 && placement == nil) {
            throw ValidationError(
                "--verify-fraction \(liveness.verifyFraction) applies to --spawn-workers N (with --replicas 2): the coordinator that dispatches the experts verifies them; for serve, give it to serve")
        }
        guard (0...20).contains(logprobs) else { throw ValidationError("--logprobs is \(logprobs), but must be between 0 and 20") }
        _ = try parsedPrompt()
        try sampling.validate()
        if coordinator != nil { try security.check() }
    }

    var sampling: SamplingParameters {
        SamplingParameters(temperature: temperature, topP: topP, topK: topK, seed: seed)
    }

    func parsedPrompt() throws -> Prompt {
        if let prompt { return .text(prompt) }
        var ids: [Int32] = []
        for (index, part) in (promptTokenIDs ?? "").split(separator: ",", omittingEmptySubsequences: false).enumerated() {
            guard let id = Int32(part.trimmingCharacters(in: .whitespaces)), id >= 0 else {
                throw ValidationError("--prompt-token-ids: entry \(index) is \"\(part)\", but must be a non-negative integer")
            }
            ids.append(id)
        }
        return .tokenIDs(ids)
    }

    func run() async throws {
        let logger = bootstrapLogging(level: logLevel, format: logFormat)
        try applyThreads(threads)
        StopSignal.install()
        let request = GenerationRequest(
            prompt: try parsedPrompt(), maxTokens: maxTokens, sampling: sampling, ignoreEOS: ignoreEOS,
            logprobs: logprobs, stop: stop)
        do {
            if let server {
                try await runAgainstServer(server, request)
                return
            }
            if let coordinator {
                let data = try GenerateClient.submit(
                    request, to: coordinator, security: try security.security(),
                    limits: CoordinatorWatch.Limits(connectTimeout: .seconds(connectTimeout), timeout: .seconds(timeout)),
                    shouldStop: { StopSignal.isStopped })
                if json {
                    print(String(decoding: data, as: UTF8.self))
                } else {
                    let result = try JSONDecoder().decode(GenerationResult.self, from: data)
                    report(result, streamed: false)
                }
                return
            }
            try runLocally(request, logger: logger)
        } catch {
            fail("\(error)")
        }
    }

    private func runAgainstServer(_ server: String, _ request: GenerationRequest) async throws {
        let client = try CompletionsClient(server: server, apiKey: try auth.key(), connection: try tls.connection())
        if json {
            print(String(decoding: try await client.complete(request), as: UTF8.self))
            return
        }
        let summary = try await client.stream(request) { piece in
            FileHandle.standardOutput.write(Data(piece.utf8))
        }
        print("\n")
        print(
            "[\(summary.promptTokens.map(String.init) ?? "?") prompt tokens, "
                + "\(summary.completionTokens.map(String.init) ?? "?") generated (\(summary.finishReason ?? "?")) by \(server)]")
    }

    private func runLocally(_ request: GenerationRequest, logger: Logger) throws {
        let checkpoint = try Checkpoint(directory: try ModelLocation.resolve(model!).directory)
        let engine = GenerationEngine(
            model: try numerics.denseModel(checkpoint),
            tokenizer: try Tokenizer(directory: checkpoint.directory),
            generationConfig: try GenerationConfig(directory: checkpoint.directory))
        let onText: ((String) -> Void)? = json ? nil : { piece in
            FileHandle.standardOutput.write(Data(piece.utf8))
        }
        let result: GenerationResult
        if spawnWorkers == 0 && placement == nil {
            let experts = checkpoint.shape.allExperts
            let loading = LoadProgress("experts", emit: { logger.info("\($0)") })
            let store = try ExpertStore(
                checkpoint: checkpoint, experts: experts, arithmetic: numerics.bf16Arithmetic,
                quantization: numerics.quantize.experts, progress: loading.report)
            loading.finished("\(experts.count) experts")
            var local = LocalExperts(store: store)
            result = try engine.generate(request, experts: &local, onText: onText)
        } else {
            // Fresh keys that live only in memory (and in the workers' environment): the loopback
            // link is encrypted and authenticated like any other.
            let workerKeys = try CurveKeyPair.generate()
            let spawnKeys = CurveServerKeys(server: try CurveKeyPair.generate(), allowed: [workerKeys.publicKey: "spawned-workers"])
            let coordinator = try ClusterCoordinator(
                checkpoint: checkpoint,
                options: CoordinatorOptions(
                    bind: "tcp://127.0.0.1:0", workerCount: max(spawnWorkers, 1),
                    workerNames: (0..<max(spawnWorkers, 1)).map { "w\($0)" },
                    placementFile: placement.map { URL(fileURLWithPath: $0) },
                    liveness: liveness.policy(), replicas: liveness.replicas,
                    arithmetic: numerics.bf16Arithmetic, wireDType: try numerics.resolvedWireDType(for: checkpoint),
                    quantization: numerics.quantize.experts, curve: spawnKeys, verifyFraction: liveness.verifyFraction),
                logger: logger)
            let workers = try SpawnedWorkers(
                names: coordinator.placement.workerNames, executable: ownExecutable,
                coordinator: coordinator.endpoint, model: checkpoint.directory,
                environment: [
                    KeyFiles.secretKeyVariable: workerKeys.secretKey.z85,
                    KeyFiles.coordinatorKeyVariable: spawnKeys.server.publicKey.z85,
                ],
                extraArguments: [
                    "--log-level", logLevel.rawValue, "--threads",
                    "\(workerThreads ?? threads ?? defaultThreadCount)",
                ])
            defer {
                coordinator.shutdown(reason: "generation finished")
                workers.stop()
            }
            try coordinator.waitUntilReady(
                timeout: .seconds(120), shouldStop: { StopSignal.isStopped },
                abandoned: { workers.exitedEarly })
            if !json {
                let names = workers.children.map { "\($0.name) (pid \($0.process.processIdentifier))" }
                FileHandle.standardError.write(Data(
                    "\(names.count) worker processes ready at \(coordinator.endpoint): \(names.joined(separator: ", "))\n".utf8))
            }
            result = try coordinator.generate(engine: engine, request: request, onText: onText)
        }
        if json {
            print(String(decoding: try result.jsonData(), as: UTF8.self))
        } else {
            report(result, streamed: true)
        }
    }

    private func report(_ result: GenerationResult, streamed: Bool) {
        if !streamed { print(result.text, terminator: "") }
        print("\n")
        print(
            "[\(result.promptTokenIDs.count) prompt tokens, \(result.completionTokenIDs.count) generated (\(result.finishReason)); "
                + String(format: "prefill %.1f tok/s, decode %.1f tok/s]", result.timing.prefillTokensPerSecond, result.timing.decodeTokensPerSecond))
        print(result.expertLoad.table(workers: result.workers))
    }

}
