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
            avx512bf16, neon) when it is set and supported. Every path gives the same bits; they differ in speed. \
            The features listed are the ones some path uses (read from /proc/cpuinfo).
            """
    )

    @Flag(help: "Print one JSON object instead of lines of text.")
    var json = false

    func run() throws {
        let cpu = CPUDescription.read()
        let facts = SystemFacts(
            cpuModel: cpu.model, cpuFeatures: cpu.features, logicalCPUs: ProcessInfo.processInfo.activeProcessorCount,
            kernelPath: KernelISA.active.rawValue, supportedKernelPaths: KernelISA.supported.map(\.rawValue),
            forcedKernelPath: ProcessInfo.processInfo.environment["SWITCHYARD_KERNEL"])
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
    }
}

struct SystemFacts: Codable {
    var cpuModel: String
    var cpuFeatures: [String]
    var logicalCPUs: Int
    var kernelPath: String
    var supportedKernelPaths: [String]
    var forcedKernelPath: String?

    enum CodingKeys: String, CodingKey {
        case cpuModel = "cpu_model"
        case cpuFeatures = "cpu_features"
        case logicalCPUs = "logical_cpus"
        case kernelPath = "kernel_path"
        case supportedKernelPaths = "supported_kernel_paths"
        case forcedKernelPath = "forced_kernel_path"
    }
}
