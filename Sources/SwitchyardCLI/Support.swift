// Process wiring shared by the subcommands: logging set-up, stop signals, the own executable.
public import ArgumentParser
import Foundation
import Kernels
import Models
public import Tensors
public import Wire
public import Logging
import Synchronization

/// Set when SIGINT or SIGTERM arrives; long-running loops poll it.
private let stopRequested = Atomic<Bool>(false)

/// Turns SIGINT and SIGTERM into a flag that long-running loops poll, so they stop cleanly.
enum StopSignal {
    static var isStopped: Bool { stopRequested.load(ordering: .relaxed) }

    static func install() {
        for signalNumber in [SIGINT, SIGTERM] {
            // Storing to an atomic is async-signal-safe.
            signal(signalNumber) { _ in stopRequested.store(true, ordering: .relaxed) }
        }
    }
}

/// Turns the end of standard input into SIGTERM for this process. A launcher keeps a pipe to each
/// process it starts (through ssh, `ip netns exec`, `docker exec -i`, ...); when the launcher exits,
/// even by SIGKILL, the pipe closes and the process stops as it would on SIGTERM: no orphans.
enum StdinWatch {
    static func start() {
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 512)
            while true {
                let count = read(STDIN_FILENO, &buffer, buffer.count)
                if count == 0 || (count < 0 && errno != EINTR) { break }
            }
            kill(getpid(), SIGTERM)
        }
        thread.name = "switchyard-stdin-watch"
        thread.start()
    }
}

/// Sends log lines to stderr at `level`, as plain text or one JSON object per line.
func bootstrapLogging(level: Logger.Level, format: LogFormat = .text) -> Logger {
    LoggingSystem.bootstrap { label in
        switch format {
        case .text:
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        case .json:
            return JSONLogHandler(label: label, level: level)
        }
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

extension Logger.Level: @retroactive ExpressibleByArgument {}

extension Logger.Level {
    static let help = "Log level: trace, debug, info, notice, warning, error or critical."
}

/// Validates a `--threads` value and applies it to the matrix kernels (outputs do not depend on it).
/// The default of `--threads`: every core this process may use (at most the kernels' maximum).
var defaultThreadCount: Int { min(max(1, ProcessInfo.processInfo.activeProcessorCount), Kernels.maximumThreadCount) }

/// Sets the kernels' thread count from `--threads` (nil: ``defaultThreadCount``) and keeps freed
/// activation buffers in the heap; returns the thread count used.
@discardableResult
func applyThreads(_ requested: Int?) throws -> Int {
    // The commands that run the model all set their threads here first; their step buffers should
    // stay in the heap from then on.
    Kernels.keepFreedMemoryInHeap()
    let threads = requested ?? defaultThreadCount
    guard (1...Kernels.maximumThreadCount).contains(threads) else {
        throw ValidationError("--threads is \(threads), but must be between 1 and \(Kernels.maximumThreadCount)")
    }
    Kernels.setThreadCount(threads)
    return threads
}

extension BFloat16Arithmetic: ExpressibleByArgument {}

/// `--quantize`: which weights are held as q8.
enum QuantizeChoice: String, CaseIterable, ExpressibleByArgument {
    /// Every weight as stored.
    case none
    /// Every matrix llama.cpp's q8_0 quantizes: the experts and the coordinator's dense model.
    case q8
    /// The experts only; the coordinator's attention, dense MLPs and LM head as stored.
    case q8Experts = "q8-experts"

    /// How the experts are held (in-process and on every worker, through ASSIGN).
    var experts: WeightQuantization { self == .none ? .none : .q8 }
    /// How the coordinator's dense model is held.
    var dense: WeightQuantization { self == .q8 ? .q8 : .none }
}

// The one DType option is --kv-cache-dtype, whose cache holds f32 or bf16: f16 is neither offered
// nor accepted (the default CaseIterable conformance would list it).
extension DType: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument {
        case "f32": self = .f32
        case "bf16": self = .bf16
        default: return nil
        }
    }

    public static var allValueStrings: [String] { ["f32", "bf16"] }
    public var defaultValueDescription: String { rawValue }
}

// By name, not by the wire's raw values (0, 1), in --help and in what is accepted.
extension WireDType: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument {
        case "f32": self = .f32
        case "bf16": self = .bf16
        default: return nil
        }
    }

    public static var allValueStrings: [String] { ["f32", "bf16"] }
    public var defaultValueDescription: String { description }
}

/// The arithmetic options shared by `generate` and `serve`.
struct NumericsOptions: ParsableArguments {
    @Option(
        name: .customLong("bf16-arithmetic"),
        help: ArgumentHelp(
            "Products with bf16 weights: fast (activations rounded to bf16, as transformers computes in bf16; about twice the throughput) or exact (weights widened, all f32: bitwise the f32 checkpoint, as transformers with dtype=float32). MXFP4 experts (gpt-oss): fast quantizes their inputs to int8 in blocks of 32, as llama.cpp does (logits within 0.1 of the dequantized model on the tests' fixture, 0.047 measured); exact multiplies the f32 inputs.",
            valueName: "fast|exact"))
    var bf16Arithmetic: BFloat16Arithmetic = .fast

    @Option(
        name: .customLong("wire-dtype"),
        help: ArgumentHelp(
            "Hidden states sent to workers in DISPATCH: f32 or bf16 (half the bytes; with --bf16-arithmetic fast it changes no result, since the products round their inputs to bf16 anyway). Workers answer in f32. Default: bf16 when the expert weights are bf16, --bf16-arithmetic is fast and --quantize is none, else f32.",
            valueName: "f32|bf16"))
    var wireDType: WireDType?

    @Option(
        help: ArgumentHelp(
            "Weights in memory: none (as stored); q8 (int8 in blocks of 32 with a scale each, quantized at load time: 1.125 bytes per weight; activations quantized the same way) for every matrix llama.cpp's q8_0 quantizes: the experts (in-process and on every worker), the attention projections, dense MLPs, shared experts and the LM head, while the embedding, routers and DeepSeek's latent attention stay as stored; or q8-experts, the experts only (the coordinator's matrices as stored: closer to the unquantized logits, more bytes read a token).",
            valueName: "none|q8|q8-experts"))
    var quantize: QuantizeChoice = .none

    @Option(
        name: .customLong("kv-cache-dtype"),
        help: ArgumentHelp(
            "Keys and values in the KV cache: f32 or bf16 (half the memory and half the bytes attention reads; values rounded to nearest even, as transformers caches a bf16 model). Default: bf16 when the key and value projections are bf16 and --bf16-arithmetic is fast, else f32.",
            valueName: "f32|bf16"))
    var kvCacheDType: DType?

    /// The wire dtype to use for `checkpoint`: the option, or the default described in its help.
    func resolvedWireDType(for checkpoint: Checkpoint) throws -> WireDType {
        if let wireDType { return wireDType }
        guard let first = checkpoint.shape.allExperts.first else { return .f32 }
        // MXFP4 experts are computed from f32 activations: no bf16 to match.
        if checkpoint.configuration.expertSpec.stacked?.mxfp4 == true { return .f32 }
        let names = checkpoint.configuration.expertSpec.tensorNames(
            layer: first.layer.rawValue, expert: first.expert.rawValue)
        let sample = try checkpoint.weight(named: names.gate)
        return sample.dtype == .bf16 && bf16Arithmetic == .fast && quantize.experts == .none ? .bf16 : .f32
    }

    /// The dense model of `checkpoint` with these options.
    func denseModel(_ checkpoint: Checkpoint) throws -> DecoderStack {
        try DecoderStack(
            checkpoint: checkpoint, arithmetic: bf16Arithmetic,
            keyValueCacheDType: kvCacheDType, quantization: quantize.dense)
    }
}
