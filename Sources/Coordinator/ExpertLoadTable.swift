// The per-expert load table printed after a generation.
import Foundation

extension ExpertLoad {
    /// Balancedness of one layer: mean load ÷ max load over experts (1 is perfectly even; 0 when idle).
    public static func balancedness(_ counts: [Int]) -> Double {
        guard let maximum = counts.max(), maximum > 0 else { return 0 }
        return Double(counts.reduce(0, +)) / Double(counts.count) / Double(maximum)
    }

    /// A table a person can read: tokens routed per expert (prefill + decode) for every MoE layer,
    /// each layer's balancedness (a dense layer says so), and which worker holds which experts.
    public func table(workers: [WorkerSummary]) -> String {
        let counts = total
        let expertCount = counts.map(\.count).max() ?? 0
        let width = max(5, String(counts.flatMap { $0 }.max() ?? 0).count + 1)
        func pad(_ text: String, _ size: Int) -> String { String(repeating: " ", count: max(0, size - text.count)) + text }

        var lines: [String] = []
        let routed = counts.flatMap { $0 }.reduce(0, +)
        lines.append("Expert load: tokens routed to each expert (prefill + decode), \(routed) in all")
        var header = pad("layer", 6)
        for expert in 0..<expertCount { header += pad("e\(expert)", width) }
        header += pad("balancedness", 14)
        lines.append(header)
        for (layer, row) in counts.enumerated() {
            var line = pad("\(layer)", 6)
            guard !row.isEmpty else {
                lines.append(line + "  dense (an MLP on the coordinator, no experts)")
                continue
            }
            for count in row { line += pad("\(count)", width) }
            line += pad(String(format: "%.2f", Self.balancedness(row)), 14)
            lines.append(line)
        }
        lines.append("Workers:")
        for worker in workers {
            var tokens = 0
            for pair in worker.experts where pair.count == 2 { tokens += counts[pair[0]][pair[1]] }
            let experts = Set(worker.experts.compactMap { $0.count == 2 ? $0[1] : nil }).sorted()
            let layers = Set(worker.experts.compactMap { $0.first }).count
            lines.append(
                "  \(worker.name): experts \(experts.map(String.init).joined(separator: ",")) of \(layers) layers, "
                    + "\(tokens) token-expert rows computed")
        }
        return lines.joined(separator: "\n")
    }
}
