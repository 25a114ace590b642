import ArgumentParser
import Coordinator
import Foundation
import Hummingbird
import Logging
import Models
import Server
import Synchronization
import Tensors
import Tokenization
import Transport

/// `switchyard serve`: the coordinator with its HTTP API.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the coordinator: dense layers, router and LM head here, experts on workers, an OpenAI-compatible HTTP API.",
        discussion: """
            Binds one ZeroMQ socket (--bind) that workers connect to and assigns each worker its experts; \
            serves generation jobs over HTTP (--http: POST /v1/completions, /v1/chat/completions, \
            GET /v1/models, GET /v1/expert_load, /health, /metrics) and from `switchyard generate --coordinator ENDPOINT`. \
            Requests are batched continuously: every running sequence advances in one step, and each MoE \
            layer sends one dispatch per worker for the whole batch. /health answers 503 until every \
            worker is ready. A worker that dies, hangs or is cut off costs a stall, not a request: its \
            rows go to replicas (--replicas) or its experts to the other workers, and /health says \
            "degraded" until it (or a replacement, named or not) is back; see WORKER FAULTS. With \
            --verify-fraction F, that fraction of dispatches is also computed by a second holder and compared \
            bit for bit; a worker whose answer differs from the coordinator's own computation is taken out. Stop it \
            with Ctrl-C or SIGTERM; workers are told to leave.

            """ + EnvironmentOptions.help + " SWITCHYARD_MODEL gives the model when neither MODEL nor --model does."
    )

    @Argument(help: "The model, as --model gives it (vLLM's `serve MODEL`).")
    var modelArgument: String?

    @Option(help: "The model: a Hugging Face checkpoint directory (config.json, safetensors, tokenizer.json), a Hub id ORG/NAME in the local Hugging Face cache (HF_HUB_CACHE, HF_HOME; nothing is downloaded), or a models--ORG--NAME cache folder.")
    var model: String?

    @Option(help: "The ZeroMQ endpoint workers connect to. Port 0 picks a free port.")
    var bind: String = "tcp://127.0.0.1:5555"

    @Option(help: "Worker processes to wait for; the experts are split evenly among them. 0 computes the experts in-process.")
    var workers: Int = 1

    @Option(help: "A placement file: {\"workers\": [{\"name\": \"w0\", \"experts\": [[layer, expert], ...], \"exclusive\": false}, ...]}; unlisted experts go evenly to the workers that are not exclusive.")
    var placement: String?

    @Option(name: .customLong("placement-json"), help: "The placement as JSON text, in the shape of a placement file (instead of --placement).")
    var placementJSON: String?

    @Flag(name: .customLong("exit-with-stdin"), help: "Stop (as on SIGTERM) when standard input closes: how `switchyard launch` stops processes it started on other hosts.")
    var exitWithStdin = false

    @Option(help: "The HTTP API's address, HOST:PORT. Port 0 picks a free port.")
    var http: String = "127.0.0.1:8080"

    @Option(
        name: .customLong("allowed-origins"),
        help: "Let browsers on these origins call the API (CORS): comma-separated or a JSON list, * for any. Default: none.")
    var allowedOrigins: String?

    @Option(help: "The HTTP API's host, replacing --http's (vLLM's spelling).")
    var host: String?

    @Option(help: "The HTTP API's port, replacing --http's (vLLM's spelling). 0 picks a free port.")
    var port: Int?

    @Option(
        name: .customLong("api-key"),
        help: "Require `Authorization: Bearer KEY` on every /v1 route. Visible to every user in `ps`: prefer --api-key-file or the SWITCHYARD_API_KEY environment variable.")
    var apiKey: String?

    @Option(
        name: .customLong("api-key-file"),
        help: "Require one of the API keys in this file on every /v1 route: one `NAME:KEY` per line (or just KEY, named key1, key2, ...); a line starting with # is a comment. Logs name the key a request used, never the key.")
    var apiKeyFile: String?

    @Option(name: .customLong("tls-cert"), help: "Serve the HTTP API over TLS (https) with this PEM certificate chain, the server's certificate first; needs --tls-key.")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "The PEM private key of --tls-cert.")
    var tlsKey: String?

    @Option(name: .customLong("served-model-name"), help: "The model name clients see. Default: the model directory's name.")
    var servedModelName: String?

    @Option(name: .customLong("max-body-bytes"), help: "Largest HTTP request body accepted, in bytes; larger ones get HTTP 413.")
    var maxBodyBytes: Int = 4 << 20

    @Option(
        name: .customLong("body-timeout"),
        help: "Seconds a client has to send a request's whole body; a body still incomplete then gets HTTP 408 and its connection is closed.")
    var bodyTimeout: Double = 60

    @Option(name: .customLong("max-running"), help: "Sequences in the running batch at most.")
    var maxRunning: Int = 64

    @Option(name: .customLong("max-waiting"), help: "Requests waiting for a place in the batch at most; more get HTTP 429.")
    var maxWaiting: Int = 256

    @Option(name: .customLong("kv-cache-tokens"), help: "KV cache capacity over all sequences, in tokens; a request reserves prompt + max_tokens.")
    var kvCacheTokens: Int = 65536

    @Option(
        name: .customLong("max-model-len"),
        help: "Prompt + generated tokens one request may hold (vLLM's spelling); longer requests get HTTP 400. At most the model's max_position_embeddings, which is the default.")
    var maxModelLen: Int?

    @Option(name: .customLong("max-step-tokens"), help: "Tokens fed through the model in one step (prefill chunks + one per decoding sequence).")
    var maxStepTokens: Int = 256

    @Option(
        name: .customLong("micro-batches"),
        help: "Split each step's sequences into this many micro-batches whose layers interleave: the coordinator computes the attention of one while the workers compute the experts of another. Helps when the workers have cores of their own (other hosts); results do not depend on it.")
    var microBatches: Int = 1

    @OptionGroup(title: "Security") var security: CoordinatorSecurityOptions

    @OptionGroup(title: "Worker faults") var liveness: LivenessOptions

    @Option(
        name: .customLong("rebalance-interval"),
        help: "Rebalance the placement automatically every this many seconds from the load routed meanwhile (as `switchyard rebalance` does).")
    var rebalanceInterval: Double?

    @Option(name: .customLong("memory-budget"), help: "Experts of one layer a worker may hold: when rebalancing (--rebalance-interval; default ⌈experts ÷ workers⌉ + 1) and when survivors take over a lost worker's experts (default: no limit; past it, requests wait for a worker to join).")
    var memoryBudget: Int?

    @Option(help: "Threads for the matrix products in this process (results do not depend on it). Default: every core.")
    var threads: Int?

    @OptionGroup var numerics: NumericsOptions

    @Option(name: .customLong("log-level"), help: ArgumentHelp(Logger.Level.help))
    var logLevel: Logger.Level = .info

    @Option(name: .customLong("log-format"), help: ArgumentHelp(LogFormat.help))
    var logFormat: LogFormat = .text

    @Option(
        name: .customLong("stats-interval"),
        help: "Seconds between the throughput lines logged while requests run (vLLM's \"Avg prompt throughput: ...\"); 0 turns them off. Each HTTP request also gets an access-log line at info level.")
    var statsInterval: Double = 5

    /// The model from `serve MODEL` or `--model`.
    var modelPath: String { modelArgument ?? model ?? "" }

    mutating func validate() throws {
        // SWITCHYARD_MODEL arrives as --model; `serve MODEL` on the command line wins over it.
        if modelArgument != nil, model != nil, !Self.modelOptionGiven { model = nil }
        guard (modelArgument == nil) != (model == nil) else {
            throw ValidationError("give the model once: `serve MODEL` or `serve --model MODEL`")
        }
        guard workers >= 0 else { throw ValidationError("--workers is \(workers), but must be 0 or more") }
        guard maxBodyBytes >= 1 else { throw ValidationError("--max-body-bytes is \(maxBodyBytes), but must be at least 1") }
        guard bodyTimeout > 0, bodyTimeout <= 1e9 else {
            throw ValidationError("--body-timeout is \(bodyTimeout), but must be a positive number of seconds")
        }
        _ = try httpAddress()
        for (name, value) in [("--max-running", maxRunning), ("--max-waiting", maxWaiting),
                              ("--kv-cache-tokens", kvCacheTokens), ("--max-step-tokens", maxStepTokens),
                              ("--micro-batches", microBatches)] where value < 1 {
            throw ValidationError("\(name) is \(value), but must be at least 1")
        }
        if microBatches > 1 && workers == 0 && placement == nil && placementJSON == nil {
            throw ValidationError(
                "--micro-batches \(microBatches) needs workers (--workers N, --placement or --placement-json): with the experts in-process there is nothing to overlap")
        }
        if apiKey != nil && apiKeyFile != nil { throw ValidationError("give --api-key or --api-key-file, not both") }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together: give both or neither") }
        if placement != nil && placementJSON != nil { throw ValidationError("give --placement or --placement-json, not both") }
        if let rebalanceInterval, !(rebalanceInterval > 0 && rebalanceInterval.isFinite) {
            throw ValidationError("--rebalance-interval is \(rebalanceInterval), but must be a positive number of seconds")
        }
        guard statsInterval >= 0 && statsInterval <= 1e6 else {
            throw ValidationError("--stats-interval is \(statsInterval), but must be a number of seconds from 0 (off) to 1000000")
        }
        if let maxModelLen, maxModelLen < 2 {
            throw ValidationError("--max-model-len is \(maxModelLen), but must be at least 2 (a prompt token and a generated one)")
        }
        if let memoryBudget, memoryBudget < 1 { throw ValidationError("--memory-budget is \(memoryBudget), but must be at least 1") }
        if liveness.verifyFraction > 0 && !usesWorkers {
            throw ValidationError(
                "--verify-fraction \(liveness.verifyFraction) needs workers (--workers N with --replicas 2, --placement or --placement-json): with the experts in-process there is no second holder to compare with")
        }
        if usesWorkers { try security.check() }
    }

    /// Whether --model is on the command line itself (not from SWITCHYARD_MODEL).
    static var modelOptionGiven: Bool {
        CommandLine.arguments.dropFirst().prefix { $0 != "--" }.contains { $0 == "--model" || $0.hasPrefix("--model=") }
    }

    /// Whether the experts are on workers (so the worker endpoint is bound), not in-process.
    var usesWorkers: Bool { workers > 0 || placement != nil || placementJSON != nil }

    func httpAddress() throws -> (host: String, port: Int) {
        guard let colon = http.lastIndex(of: ":"), let port = Int(http[http.index(after: colon)...]),
            (0...65535).contains(port), colon != http.startIndex
        else { throw ValidationError("--http is \"\(http)\", but must be HOST:PORT, e.g. 127.0.0.1:8080") }
        if let host, host.isEmpty { throw ValidationError("--host is empty; give an address such as 127.0.0.1") }
        if let port = self.port, !(0...65535).contains(port) {
            throw ValidationError("--port is \(port), but must be between 0 and 65535")
        }
        return (host ?? String(http[..<colon]), self.port ?? port)
    }

    /// The API keys from --api-key, --api-key-file or SWITCHYARD_API_KEY (named "env"); none leaves /v1 open.
    func resolvedAPIKeys() throws -> [APIKey] {
        if let apiKeyFile { return try APIKeyFile.read(apiKeyFile) }
        if let apiKey { return [APIKey(name: "default", key: apiKey)] }
        if let key = ProcessInfo.processInfo.environment["SWITCHYARD_API_KEY"], !key.isEmpty {
            return [APIKey(name: "env", key: key)]
        }
        return []
    }

    func run() async throws {
        let logger = bootstrapLogging(level: logLevel, format: logFormat)
        try applyThreads(threads)
        // Keys first: --keys-from-stdin reads them from the stream that --exit-with-stdin then watches.
        let curve: CurveServerKeys?
        do { curve = usesWorkers ? try security.serverKeys() : nil } catch { fail("\(error)") }
        if exitWithStdin { StdinWatch.start() }
        do {
            // Read before the model loads: a wrong certificate or key path fails at once.
            let tls = try tlsCert.map { try ServerTLS(certificateFile: $0, keyFile: tlsKey ?? "") }
            let location = try ModelLocation.resolve(modelPath)
            let loading = LoadProgress("model", emit: { logger.info("\($0)") })
            logger.info("loading the model from \(location.directory.path)")
            let checkpoint = try Checkpoint(directory: location.directory)
            let modelContext = checkpoint.shape.maxPositionEmbeddings
            if let maxModelLen, maxModelLen > modelContext {
                fail("--max-model-len is \(maxModelLen), but the model's max_position_embeddings is \(modelContext): give at most \(modelContext)")
            }
            let engine = GenerationEngine(
                model: try numerics.denseModel(checkpoint),
                tokenizer: try Tokenizer(directory: checkpoint.directory),
                generationConfig: try GenerationConfig(directory: checkpoint.directory))
            let shape = checkpoint.shape
            loading.finished(
                "\(checkpoint.architecture.name): \(shape.layerCount) layers, \(shape.expertCount) experts a MoE layer; the coordinator's weights")
            let scheduler = Scheduler(
                engine: engine, modelName: servedModelName ?? location.repositoryID ?? checkpoint.directory.lastPathComponent,
                limits: SchedulerLimits(
                    maxRunningSequences: maxRunning, maxWaitingRequests: maxWaiting, kvCacheTokens: kvCacheTokens,
                    maxTokensPerStep: maxStepTokens, microBatches: microBatches, maxModelLength: maxModelLen))
            let engineThread = try EngineThread.start(
                scheduler: scheduler, checkpoint: checkpoint, logger: logger,
                rebalancer: rebalanceInterval.map {
                    AutoRebalancer(interval: .milliseconds(Int($0 * 1000)), expertSlotsPerWorker: memoryBudget)
                },
                options: workers == 0 && placement == nil && placementJSON == nil
                    ? nil
                    : CoordinatorOptions(
                        bind: bind, workerCount: max(workers, 1), placementFile: placement.map { URL(fileURLWithPath: $0) },
                        placementJSON: placementJSON,
                        liveness: liveness.policy(expertBudget: memoryBudget), replicas: liveness.replicas,
                        arithmetic: numerics.bf16Arithmetic, wireDType: try numerics.resolvedWireDType(for: checkpoint),
                        quantization: numerics.quantize.experts, curve: curve, verifyFraction: liveness.verifyFraction),
                arithmetic: numerics.bf16Arithmetic, quantization: numerics.quantize.experts)
            let (host, port) = try httpAddress()
            var serverConfiguration = ServerConfiguration(
                host: host, port: port, modelName: servedModelName,
                maxRequestBodyBytes: maxBodyBytes, requestBodyTimeout: .milliseconds(Int(bodyTimeout * 1000)))
            serverConfiguration.apiKeys = try resolvedAPIKeys()
            do {
                serverConfiguration.allowedOrigins = try allowedOrigins.map(AllowedOrigins.init(parsing:))
            } catch {
                throw ValidationError(error.description)
            }
            let app = makeApplication(
                service: scheduler,
                configuration: serverConfiguration,
                logger: logger, server: try httpServer(tls: tls),
                onServerRunning: { port in logger.info("HTTP API listening on \(tls == nil ? "http" : "https")://\(host):\(port)") })
            let throughputLog = Task { [statsInterval] in
                guard statsInterval > 0 else { return }
                await ThroughputLog.run(service: scheduler, interval: .milliseconds(Int(statsInterval * 1000)), logger: logger)
            }
            defer { throughputLog.cancel() }
            // Runs until SIGINT/SIGTERM, then shuts down gracefully (in-flight responses finish).
            do {
                try await app.runService()
            } catch where "\(error)".contains("Address already in use") {
                // NIO's bind error names neither the address nor the option; its type is not ours
                // to import (swift-nio is not a direct dependency), so it is recognised by its text.
                fail("HTTP address \(host):\(port) (--http, --host, --port): address already in use (another server listens there; choose another port, or 0 for a free one)")
            }
            scheduler.stop()
            await engineThread.join()
            logger.info("coordinator stopped")
        } catch {
            fail("\(error)")
        }
    }
}

/// The thread that owns the expert executor (and with it the worker socket) and runs the scheduler.
final class EngineThread: Sendable {
    private let done = DispatchSemaphore(value: 0)

    /// Starts the engine; returns once the worker socket is bound (or throws why it could not be).
    static func start(
        scheduler: Scheduler, checkpoint: Checkpoint, logger: Logger, rebalancer: AutoRebalancer? = nil,
        options: CoordinatorOptions?, arithmetic: BFloat16Arithmetic, quantization: WeightQuantization
    ) throws -> EngineThread {
        let engineThread = EngineThread()
        let started = DispatchSemaphore(value: 0)
        let startError = Mutex<(any Error)?>(nil)
        let thread = Thread { [done = engineThread.done] in
            defer { done.signal() }
            do {
                if let options {
                    var coordinator = try ClusterCoordinator(checkpoint: checkpoint, options: options, logger: logger)
                    coordinator.onHealthChange = { scheduler.publishHealth($0) }
                    logger.info(
                        "coordinator listening on \(coordinator.endpoint); waiting for \(coordinator.placement.workerCount) workers: \(coordinator.joinCommand)"
                    )
                    started.signal()
                    scheduler.run(executor: &coordinator, rebalancer: rebalancer)
                    coordinator.shutdown(reason: "coordinator stopping")
                } else {
                    let experts = checkpoint.shape.allExperts
                    let loading = LoadProgress("experts", emit: { logger.info("\($0)") })
                    var local = LocalExperts(
                        store: try ExpertStore(
                            checkpoint: checkpoint, experts: experts, arithmetic: arithmetic, quantization: quantization,
                            progress: loading.report))
                    loading.finished("\(experts.count) experts")
                    logger.info(
                        "computing all experts in-process (--workers 0); no ZeroMQ socket is bound, so `generate --coordinator` cannot reach this server: use `generate --server http://HOST:PORT`")
                    started.signal()
                    scheduler.run(executor: &local)
                }
            } catch {
                startError.withLock { $0 = error }
                started.signal()
            }
        }
        thread.stackSize = 16 << 20
        thread.name = "switchyard-engine"
        thread.start()
        started.wait()
        if let error = startError.withLock({ $0 }) { throw error }
        return engineThread
    }

    /// Waits until the engine loop has returned.
    func join() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async { [done] in
                done.wait()
                continuation.resume()
            }
        }
    }
}
