import ArgumentParser
import ExpertWorker
import Foundation
import Logging
import Models
import Transport
import Wire


/// `switchyard worker`: an expert worker process.
struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run an expert worker: hold a shard of the expert FFNs and answer the coordinator's dispatches.",
        discussion: """
            The worker connects to the coordinator, registers with the model's fingerprint (a worker \
            whose model differs from the coordinator's is refused), loads the experts it is assigned \
            from its local copy of the checkpoint, and computes the routed token rows it receives. It \
            sends a heartbeat every --heartbeat-interval; when the coordinator restarts or forgets it \
            (after declaring it lost), it registers again by itself, with backoff. A worker started \
            under the name of a live one waits until that one is lost or leaves. Stop it with Ctrl-C or SIGTERM.

            """ + EnvironmentOptions.help
    )

    @Option(help: "The coordinator's worker endpoint, e.g. tcp://127.0.0.1:5555.")
    var coordinator: String

    @Option(help: "The model: a local copy of the coordinator's checkpoint (a directory, a Hub id ORG/NAME in the local Hugging Face cache, or a models--ORG--NAME cache folder).")
    var model: String

    @Option(help: "The name this worker registers with (at most 255 bytes); placement files refer to it. Default: HOST-PID.")
    var name: String?

    @Option(help: "Threads for the expert matrix products (results do not depend on it). Default: every core.")
    var threads: Int?

    @Option(
        name: .customLong("heartbeat-interval"),
        help: "Seconds between heartbeats to the coordinator (match the coordinator's --heartbeat-interval). The worker registers again when the coordinator stays silent for 10 intervals (at least 5 s).")
    var heartbeatInterval: Double = 0.5

    @Option(name: .customLong("log-level"), help: ArgumentHelp(Logger.Level.help))
    var logLevel: Logger.Level = .info

    @Option(name: .customLong("log-format"), help: ArgumentHelp(LogFormat.help))
    var logFormat: LogFormat = .text

    @Flag(name: .customLong("exit-with-stdin"), help: "Stop (as on SIGTERM) when standard input closes: how `switchyard launch` stops processes it started on other hosts.")
    var exitWithStdin = false

    @OptionGroup(title: "Security") var security: ClientSecurityOptions

    @Option(name: .customLong("parent-pid"), help: .hidden)
    var parentPID: Int32?

    func validate() throws {
        guard coordinator.hasPrefix("tcp://") || coordinator.hasPrefix("ipc://") else {
            throw ValidationError("--coordinator is \"\(coordinator)\", but must be an endpoint like tcp://HOST:PORT")
        }
        guard heartbeatInterval > 0 && heartbeatInterval.isFinite else {
            throw ValidationError("--heartbeat-interval is \(heartbeatInterval), but must be a positive number of seconds")
        }
        if let name, name.utf8.count > WireMessage.Hello.workerNameLimit {
            throw ValidationError(
                "--name has \(name.utf8.count) bytes, but a worker name has at most \(WireMessage.Hello.workerNameLimit)")
        }
        try security.check()
    }

    func run() throws {
        let logger = bootstrapLogging(level: logLevel, format: logFormat)
        let threads = try applyThreads(threads)
        StopSignal.install()
        // Keys first: --keys-from-stdin reads them from the stream that --exit-with-stdin then watches.
        let linkSecurity: DealerSecurity
        do { linkSecurity = try security.security() } catch { fail("\(error)") }
        if exitWithStdin { StdinWatch.start() }
        let modelDirectory: URL
        do { modelDirectory = try ModelLocation.resolve(model).directory } catch { fail("\(error)") }
        let options = WorkerOptions(
            coordinator: coordinator, modelDirectory: modelDirectory,
            name: name ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())", threads: threads, parentPID: parentPID,
            heartbeatInterval: LivenessOptions.duration(heartbeatInterval), security: linkSecurity)
        do {
            try WorkerService(options: options, logger: logger).run { StopSignal.isStopped }
        } catch {
            fail("\(error)")
        }
    }
}
