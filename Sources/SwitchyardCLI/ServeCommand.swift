import ArgumentParser
import Coordinator
import Foundation
import Logging
import Models
import Tokenization

/// `switchyard serve`: the coordinator.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the coordinator: dense layers, router and LM head here, experts on workers.",
        discussion: """
            Binds one ZeroMQ socket that workers and clients connect to, waits for --workers workers \
            (or the workers a --placement file names), assigns each its experts, then serves generation \
            jobs from `switchyard generate --coordinator ENDPOINT`. Stop it with Ctrl-C or SIGTERM; \
            workers are told to leave.
            """
    )

    @Option(help: "The model directory (Hugging Face checkpoint: config.json, safetensors, tokenizer.json).")
    var model: String

    @Option(help: "The endpoint workers and clients connect to. Port 0 picks a free port.")
    var bind: String = "tcp://127.0.0.1:5555"

    @Option(help: "Worker processes to wait for; the experts are split evenly among them.")
    var workers: Int = 1

    @Option(help: "A placement file: {\"workers\": [{\"name\": \"w0\", \"experts\": [[layer, expert], ...]}, ...]}.")
    var placement: String?

    @Option(name: .customLong("dispatch-timeout"), help: "Seconds a step waits for a worker before the job fails.")
    var dispatchTimeout: Double = 60

    @Option(name: .customLong("log-level"), help: ArgumentHelp(Logger.Level.help))
    var logLevel: Logger.Level = .info

    func validate() throws {
        guard workers >= 1 else { throw ValidationError("--workers is \(workers), but must be at least 1") }
        guard dispatchTimeout > 0 else { throw ValidationError("--dispatch-timeout must be positive") }
    }

    func run() throws {
        let logger = bootstrapLogging(level: logLevel)
        StopSignal.install()
        do {
            let checkpoint = try Checkpoint(directory: URL(fileURLWithPath: model))
            let engine = GenerationEngine(
                model: try MixtralDenseModel(checkpoint: checkpoint),
                tokenizer: try Tokenizer(directory: checkpoint.directory))
            let coordinator = try ClusterCoordinator(
                checkpoint: checkpoint,
                options: CoordinatorOptions(
                    bind: bind, workerCount: workers, placementFile: placement.map { URL(fileURLWithPath: $0) },
                    dispatchTimeout: .milliseconds(Int(dispatchTimeout * 1000))),
                logger: logger)
            logger.info(
                "coordinator listening on \(coordinator.endpoint); waiting for \(coordinator.placement.workerCount) workers: switchyard worker --coordinator \(coordinator.endpoint) --model \(checkpoint.directory.path)"
            )
            try coordinator.waitUntilReady(timeout: nil, shouldStop: { StopSignal.isStopped })
            logger.info("all \(coordinator.placement.workerCount) workers ready; serving jobs at \(coordinator.endpoint)")
            coordinator.serveClients(engine: engine) { StopSignal.isStopped }
            coordinator.shutdown(reason: "coordinator stopping")
            logger.info("coordinator stopped")
        } catch {
            fail("\(error)")
        }
    }
}
