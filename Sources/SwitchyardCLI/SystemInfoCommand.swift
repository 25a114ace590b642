import ArgumentParser
import Foundation
import Kernels

/// `switchyard system-info`: what the kernels run on here (the benchmark prints it at the top of its table).
struct SystemInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "system-info",
        abstract: "Print the CPU, its vector features and the kernel path this process would use.",
        discussion: """
            The kernel path is the best one the CPU supports, or SWITCHYARD_KERNEL (scalar, avx2, avx2vnni, avx512, \
            avx512bf16, amx, neon) when it is set and supported. Every path gives the same bits and they differ in \
            speed, except amx (never the default): its fast bf16 products run on AMX tiles, with bits of their own. \
            The features listed are the ones some path uses (read from /proc/cpuinfo). The weight prefetch is \
            whether the AVX-512 paths prefetch their weights ahead of the loads: off on AMD CPUs, on elsewhere, or \
            SWITCHYARD_STREAM_PREFETCH=1 or 0 (it changes speed only).
            """
    )

    @Flag(help: "Print one JSON object instead of lines of text.")
    var json = false

    func run() throws {
        let cpu = CPUDescription.read()
        let facts = SystemFacts(
            cpuModel: cpu.model, cpuFeatures: cpu.features, logicalCPUs: ProcessInfo.processInfo.activeProcessorCount,
            kernelPath: KernelISA.active.rawValue, supportedKernelPaths: KernelISA.supported.map(\.rawValue),
            forcedKernelPath: ProcessInfo.processInfo.environment["SWITCHYARD_KERNEL"],
            weightPrefetch: KernelISA.streamPrefetch,
            forcedWeightPrefetch: ProcessInfo.processInfo.environment["SWITCHYARD_STREAM_PREFETCH"].flatMap {
                ["0", "1"].contains($0) ? $0 : nil  // another value is reported on stderr and ignored
            })
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(facts), as: UTF8.self))
            return
        }
        print("cpu             \(facts.cpuModel)")
        print("features        \(facts.cpuFeatures.isEmpty ? "none of those the kernels use" : facts.cpuFeatures.joined(separator: " "))")
        print("logical cpus    \(facts.logicalCPUs)")
        print("kernel path     \(facts.kernelPath)\(facts.forcedKernelPath.map { " (SWITCHYARD_KERNEL=\($0))" } ?? "")")
        print("supported paths \(facts.supportedKernelPaths.joined(separator: " "))")
        let prefetchSource = facts.forcedWeightPrefetch.map { "SWITCHYARD_STREAM_PREFETCH=\($0)" } ?? "chosen for this CPU's maker"
        print("weight prefetch \(facts.weightPrefetch ? "on" : "off") (AVX-512 paths; \(prefetchSource))")
    }
}

struct SystemFacts: Codable {
    var cpuModel: String
    var cpuFeatures: [String]
    var logicalCPUs: Int
    var kernelPath: String
    var supportedKernelPaths: [String]
    var forcedKernelPath: String?
    var weightPrefetch: Bool
    var forcedWeightPrefetch: String?

    enum CodingKeys: String, CodingKey {
        case cpuModel = "cpu_model"
        case cpuFeatures = "cpu_features"
        case logicalCPUs = "logical_cpus"
        case kernelPath = "kernel_path"
        case supportedKernelPaths = "supported_kernel_paths"
        case forcedKernelPath = "forced_kernel_path"
        case weightPrefetch = "weight_prefetch"
        case forcedWeightPrefetch = "forced_weight_prefetch"
    }
}
