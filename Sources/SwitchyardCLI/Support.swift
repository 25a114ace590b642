// Process wiring shared by the subcommands: logging set-up, stop signals, the own executable.
import Dispatch
import Foundation
import Logging
import Synchronization

/// Set when SIGINT or SIGTERM arrives; long-running loops poll it.
final class StopSignal: Sendable {
    static let shared = StopSignal()
    private let stopped = Atomic<Bool>(false)
    // Dispatch sources must stay alive for the handlers to fire.
    private let sources: Mutex<[any DispatchSourceSignal]> = Mutex([])

    var isStopped: Bool { stopped.load(ordering: .relaxed) }

    /// Routes SIGINT and SIGTERM to the flag instead of killing the process.
    func install() {
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { [self] in stopped.store(true, ordering: .relaxed) }
            source.resume()
            sources.withLock { $0.append(source) }
        }
    }
}

/// Sends log lines to stderr at `level`.
func bootstrapLogging(level: Logger.Level) -> Logger {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
    return Logger(label: "switchyard")
}

/// The running `switchyard` executable, to start workers from.
var ownExecutable: URL {
    URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
}

/// Prints one line to stderr and exits non-zero: how a failing command ends.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    exit(1)
}

extension Logger.Level {
    static let help = "Log level: trace, debug, info, notice, warning, error or critical."
}
