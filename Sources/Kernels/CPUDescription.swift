// Vocabulary: the CPU a process runs on, as /proc/cpuinfo describes it: its model name and the vector
// features that one of the kernel paths uses (`switchyard system-info`, the benchmark's header).
import Foundation

/// The CPU's model name and the vector features a kernel path uses, from /proc/cpuinfo (x86: `model
/// name` and `flags`; ARM: `CPU implementer`/`CPU part` and `Features`).
public struct CPUDescription: Sendable, Equatable {
    public static let relevantFeatures: Set<String> = [
        "avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni", "amx_bf16",
        "asimd", "asimddp", "bf16", "i8mm", "sve", "sve2",
    ]

    /// The model name (x86), or the implementer and part numbers (ARM).
    public var model: String
    /// The features some kernel path uses, sorted.
    public var features: [String]

    /// This machine's CPU, from `path`.
    public static func read(path: String = "/proc/cpuinfo") -> CPUDescription {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            return CPUDescription(model: "unknown (\(path) is unreadable)", features: [])
        }
        return parse(text)
    }

    /// The first processor's block of a /proc/cpuinfo text.
    public static func parse(_ text: String) -> CPUDescription {
        var fields: [String: String] = [:]
        // The first processor's block is enough: the kernels assume every core is alike.
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.trimmingCharacters(in: .whitespaces).isEmpty { if !fields.isEmpty { break } else { continue } }
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let key = parts[0].trimmingCharacters(in: .whitespaces)
            if fields[key] == nil { fields[key] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        let model = fields["model name"]
            ?? fields["CPU implementer"].map { "ARM implementer \($0), part \(fields["CPU part"] ?? "?")" }
            ?? "unknown"
        let flags = (fields["flags"] ?? fields["Features"] ?? "").split(separator: " ").map(String.init)
        return CPUDescription(model: model, features: flags.filter(relevantFeatures.contains).sorted())
    }
}
