// The expert-load report in the forms `switchyard balance` writes: a table for people, CSV for
// spreadsheets, and an SVG heatmap (layers × experts, layers × workers) for browsers.
// Pure: a report in, text out.
public import Coordinator
import Foundation

/// Renders an `ExpertLoadReport`.
public enum LoadReportFormat {
    // MARK: table

    /// A table a person can read: the hottest experts, each layer's balance statistics, and each
    /// worker's load and latency, over the whole run and over the window.
    /// - Parameter hottest: how many of the hottest (layer, expert) pairs to list.
    public static func table(_ report: ExpertLoadReport, hottest: Int = 10) -> String {
        var lines: [String] = []
        let whole = report.whole
        let window = report.window
        let dense = (0..<report.layerCount).filter { !whole.moeLayers.contains($0) }
        lines.append(
            "Expert load: \(whole.moeLayers.count) MoE layer\(whole.moeLayers.count == 1 ? "" : "s") × \(report.expertCount) experts"
                + (dense.isEmpty ? "" : " (of \(report.layerCount) layers; dense: \(dense.map(String.init).joined(separator: ", ")))")
                + "; up \(fixed(report.uptimeSeconds, 0)) s; "
                + "\(whole.stepCount) steps, \(whole.prefillTokenCount) prompt + \(whole.decodeTokenCount) decode tokens "
                + "(last \(report.windowSeconds) s: \(window.stepCount) steps, \(window.prefillTokenCount + window.decodeTokenCount) tokens)")
        lines.append("")

        // Hottest experts.
        var pairs: [(layer: Int, expert: Int, tokens: Int)] = []
        for (layer, counts) in whole.tokensPerExpert.enumerated() {
            for (expert, count) in counts.enumerated() where count > 0 { pairs.append((layer, expert, count)) }
        }
        pairs.sort { ($0.tokens, -$0.layer, -$0.expert) > ($1.tokens, -$1.layer, -$1.expert) }
        lines.append("Hottest experts (since start):")
        if pairs.isEmpty {
            lines.append("  no tokens routed yet")
        } else {
            var rows = [["layer", "expert", "tokens", "× layer mean", "last \(report.windowSeconds) s"]]
            for pair in pairs.prefix(hottest) {
                let layerTotal = whole.tokensPerExpert[pair.layer].reduce(0, +)
                let mean = Double(layerTotal) / Double(max(1, report.expertCount))
                rows.append([
                    "\(pair.layer)", "\(pair.expert)", "\(pair.tokens)", fixed(Double(pair.tokens) / mean, 2),
                    "\(window.tokensPerExpert[pair.layer][pair.expert])",
                ])
            }
            lines += aligned(rows, indent: 2)
        }
        lines.append("")

        // Per-layer statistics.
        lines.append("Per layer (since start; balancedness = mean ÷ max, 1 is even):")
        var header = ["layer", "balancedness", "max÷mean", "CV", "entropy", "unused", "hottest"]
        let hasWorkers = !whole.workers.isEmpty
        if hasWorkers { header += ["worker bal.", "busiest worker"] }
        header.append("bal. last \(report.windowSeconds) s")
        var rows = [header]
        for (index, layer) in whole.layers.enumerated() {
            let stats = layer.experts
            var row = [
                "\(layer.layer)", fixed(stats.balancedness, 3), fixed(stats.maxOverMean, 2),
                fixed(stats.coefficientOfVariation, 2), fixed(stats.normalizedEntropy, 3),
                "\(stats.unusedCount)", stats.hottest.map { "e\($0)" } ?? "-",
            ]
            if hasWorkers {
                let workerStats = layer.workers
                row.append(workerStats.map { fixed($0.balancedness, 3) } ?? "-")
                row.append(workerStats?.hottest.map { whole.workers[$0].name } ?? "-")
            }
            let windowed = window.layers[index].experts
            row.append(windowed.total == 0 ? "-" : fixed(windowed.balancedness, 3))
            rows.append(row)
        }
        lines += aligned(rows, indent: 2)
        lines.append("")

        // Workers.
        if hasWorkers {
            lines.append("Workers (since start; per dispatch = one MoE layer of one step):")
            var rows = [["worker", "dispatches", "rows", "expert rows", "share", "MB sent", "MB received",
                         "compute ms/dispatch", "round trip ms/dispatch"]]
            let allExpertRows = whole.workers.reduce(0) { $0 + $1.total.expertRowCount }
            for worker in whole.workers {
                let load = worker.total
                let dispatches = Double(max(1, load.dispatchCount))
                rows.append([
                    worker.name, "\(load.dispatchCount)", "\(load.rowCount)", "\(load.expertRowCount)",
                    allExpertRows == 0 ? "-" : fixed(100 * Double(load.expertRowCount) / Double(allExpertRows), 1) + "%",
                    fixed(Double(load.bytesSent) / 1e6, 2), fixed(Double(load.bytesReceived) / 1e6, 2),
                    load.dispatchCount == 0 ? "-" : fixed(Double(load.computeMicroseconds) / 1000 / dispatches, 3),
                    load.dispatchCount == 0 ? "-" : fixed(Double(load.roundTripMicroseconds) / 1000 / dispatches, 3),
                ])
            }
            lines += aligned(rows, indent: 2)
        } else {
            lines.append("Workers: none (the experts run in the coordinator's process)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: CSV

    /// The CSV header.
    public static let csvHeader =
        "period,layer,kind,name,tokens,rows,dispatches,bytes_sent,bytes_received,compute_us,round_trip_us,balancedness"

    /// One row per (period, layer, expert), (period, layer, worker) and per layer's balancedness
    /// over experts and over workers. `period` is `run` or `window`; `kind` is `expert`, `worker`,
    /// `layer_experts` or `layer_workers`; `tokens` counts tokens routed to an expert, or a
    /// worker's (token, expert) rows. Cells that do not apply are empty.
    public static func csv(_ report: ExpertLoadReport) -> String {
        var lines = [csvHeader]
        for (period, data) in [("run", report.whole), ("window", report.window)] {
            for (index, layer) in data.moeLayers.enumerated() {
                for (expert, count) in data.tokensPerExpert[layer].enumerated() {
                    lines.append("\(period),\(layer),expert,\(expert),\(count),,,,,,,")
                }
                for worker in data.workers {
                    let load = worker.layers[layer]
                    lines.append(
                        "\(period),\(layer),worker,\(csvField(worker.name)),\(load.expertRowCount),\(load.rowCount),"
                            + "\(load.dispatchCount),\(load.bytesSent),\(load.bytesReceived),\(load.computeMicroseconds),"
                            + "\(load.roundTripMicroseconds),")
                }
                let stats = data.layers[index]
                lines.append("\(period),\(layer),layer_experts,,\(stats.experts.total),,,,,,,\(stats.experts.balancedness)")
                if let workers = stats.workers {
                    lines.append("\(period),\(layer),layer_workers,,\(workers.total),,,,,,,\(workers.balancedness)")
                }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: SVG

    /// Geometry of the heatmap, shared with tests that look at the rendered image.
    public struct HeatmapLayout: Sendable, Equatable {
        public let cellWidth: Int
        public let cellHeight: Int
        public let workerCellWidth: Int
        public let left: Int
        public let expertsTop: Int
        public let workersTop: Int
        public let width: Int
        public let height: Int

        public init(layerCount: Int, expertCount: Int, workerCount: Int) {
            cellWidth = max(8, min(44, 1100 / max(1, expertCount)))
            cellHeight = layerCount > 48 ? 12 : 22
            workerCellWidth = 96
            left = 78
            expertsTop = 86
            let expertsBottom = expertsTop + layerCount * cellHeight
            workersTop = expertsBottom + 96
            let workersBottom = workerCount == 0 ? expertsBottom : workersTop + layerCount * cellHeight
            width = max(left + expertCount * cellWidth, left + workerCount * workerCellWidth, 420) + 130
            height = workersBottom + 40
        }
    }

    /// An SVG heatmap: tokens per (layer, expert), and (token, expert) rows per (layer, worker)
    /// when there are workers. Cold cells are pale yellow, hot ones dark red (one scale per map,
    /// from 0 to the map's maximum); an expert that received nothing is grey. Axes are labelled
    /// and each map has a legend. Each cell is a `rect` with id `expert-L-E` or `worker-L-W`.
    public static func svg(_ report: ExpertLoadReport, title: String = "Switchyard expert load") -> String {
        let period = report.whole
        // One row per MoE layer, labelled with its real layer number; dense layers have no experts.
        let moeLayers = period.moeLayers
        let layerCount = moeLayers.count
        let expertCount = report.expertCount
        let layout = HeatmapLayout(layerCount: layerCount, expertCount: expertCount, workerCount: period.workers.count)
        var out = """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(layout.width)" height="\(layout.height)" \
            viewBox="0 0 \(layout.width) \(layout.height)" font-family="sans-serif" font-size="11">
            <rect x="0" y="0" width="\(layout.width)" height="\(layout.height)" fill="#ffffff"/>
            <text x="10" y="22" font-size="15" font-weight="bold">\(xml(title))</text>
            <text x="10" y="40">\(period.stepCount) steps, \(period.prefillTokenCount) prompt + \(period.decodeTokenCount) decode tokens since start; \
            balancedness = mean ÷ max per layer</text>

            """

        let expertMaximum = period.tokensPerExpert.flatMap { $0 }.max() ?? 0
        out += "<text x=\"\(layout.left)\" y=\"\(layout.expertsTop - 26)\" font-weight=\"bold\">Tokens routed per expert (layers × experts)</text>\n"
        out += axisLabels(
            columns: (0..<expertCount).map { "e\($0)" }, layout: layout, top: layout.expertsTop,
            cellWidth: layout.cellWidth, rowLabels: moeLayers, axis: "expert")
        for (row, layer) in moeLayers.enumerated() {
            for (expert, count) in period.tokensPerExpert[layer].enumerated() {
                out += cell(
                    id: "expert-\(layer)-\(expert)", x: layout.left + expert * layout.cellWidth,
                    y: layout.expertsTop + row * layout.cellHeight, width: layout.cellWidth, height: layout.cellHeight,
                    value: count, maximum: expertMaximum, label: layout.cellWidth >= 30 ? "\(count)" : nil,
                    tooltip: "layer \(layer) expert \(expert): \(count) tokens")
            }
            out += rowSummary(
                x: layout.left + expertCount * layout.cellWidth + 8, y: layout.expertsTop + row * layout.cellHeight,
                height: layout.cellHeight, text: "bal. " + fixed(period.balancedness[row], 2))
        }
        out += legend(
            x: layout.left, y: layout.expertsTop + layerCount * layout.cellHeight + 22, maximum: expertMaximum, unit: "tokens")

        if !period.workers.isEmpty {
            let workerLoads = moeLayers.map { layer in period.workers.map { $0.layers[layer].expertRowCount } }
            let workerMaximum = workerLoads.flatMap { $0 }.max() ?? 0
            out += "<text x=\"\(layout.left)\" y=\"\(layout.workersTop - 26)\" font-weight=\"bold\">(Token, expert) rows computed per worker (layers × workers)</text>\n"
            out += axisLabels(
                columns: period.workers.map(\.name), layout: layout, top: layout.workersTop,
                cellWidth: layout.workerCellWidth, rowLabels: moeLayers, axis: "worker")
            for (row, layer) in moeLayers.enumerated() {
                for (index, worker) in period.workers.enumerated() {
                    let count = workerLoads[row][index]
                    out += cell(
                        id: "worker-\(layer)-\(index)", x: layout.left + index * layout.workerCellWidth,
                        y: layout.workersTop + row * layout.cellHeight, width: layout.workerCellWidth,
                        height: layout.cellHeight, value: count, maximum: workerMaximum, label: "\(count)",
                        tooltip: "layer \(layer) worker \(worker.name): \(count) (token, expert) rows")
                }
                let balance = period.layers[row].workers?.balancedness ?? 0
                out += rowSummary(
                    x: layout.left + period.workers.count * layout.workerCellWidth + 8,
                    y: layout.workersTop + row * layout.cellHeight, height: layout.cellHeight,
                    text: "bal. " + fixed(balance, 2))
            }
            out += legend(
                x: layout.left, y: layout.workersTop + layerCount * layout.cellHeight + 22, maximum: workerMaximum,
                unit: "rows")
        }
        out += "</svg>\n"
        return out
    }

    /// The fill of a cell with `value` on a scale up to `maximum`: grey for 0, then pale yellow
    /// (#ffffb2) through orange (#fd8d3c) to dark red (#800026).
    public static func color(value: Int, maximum: Int) -> String {
        guard value > 0, maximum > 0 else { return "#e6e6e6" }
        let t = min(1, Double(value) / Double(maximum))
        let stops: [(Double, (Double, Double, Double))] = [
            (0, (255, 255, 178)), (0.5, (253, 141, 60)), (1, (128, 0, 38)),
        ]
        let upper = t <= 0.5 ? 1 : 2
        let (t0, c0) = stops[upper - 1]
        let (t1, c1) = stops[upper]
        let f = (t - t0) / (t1 - t0)
        func mix(_ a: Double, _ b: Double) -> Int { Int((a + (b - a) * f).rounded()) }
        return String(format: "#%02x%02x%02x", mix(c0.0, c1.0), mix(c0.1, c1.1), mix(c0.2, c1.2))
    }

    private static func cell(
        id: String, x: Int, y: Int, width: Int, height: Int, value: Int, maximum: Int, label: String?, tooltip: String
    ) -> String {
        let fill = color(value: value, maximum: maximum)
        var text = "<rect id=\"\(id)\" x=\"\(x)\" y=\"\(y)\" width=\"\(width)\" height=\"\(height)\" fill=\"\(fill)\" "
            + "stroke=\"#ffffff\" stroke-width=\"1\"><title>\(xml(tooltip))</title></rect>\n"
        if let label {
            let dark = maximum > 0 && Double(value) / Double(maximum) > 0.55
            text += "<text x=\"\(x + width / 2)\" y=\"\(y + height / 2 + 4)\" text-anchor=\"middle\" "
                + "fill=\"\(dark ? "#ffffff" : "#000000")\">\(xml(label))</text>\n"
        }
        return text
    }

    private static func axisLabels(
        columns: [String], layout: HeatmapLayout, top: Int, cellWidth: Int, rowLabels: [Int], axis: String
    ) -> String {
        let layerCount = rowLabels.count
        var out = ""
        // Label every column when they fit, else every n-th.
        let every = max(1, 28 / cellWidth)
        for (index, name) in columns.enumerated() where index % every == 0 {
            let shown = name.count > 14 ? String(name.prefix(13)) + "…" : name
            out += "<text x=\"\(layout.left + index * cellWidth + cellWidth / 2)\" y=\"\(top - 6)\" text-anchor=\"middle\">\(xml(shown))</text>\n"
        }
        let rowEvery = layout.cellHeight < 16 ? 4 : 1
        for (row, layer) in rowLabels.enumerated() where row % rowEvery == 0 {
            out += "<text x=\"\(layout.left - 6)\" y=\"\(top + row * layout.cellHeight + layout.cellHeight / 2 + 4)\" text-anchor=\"end\">layer \(layer)</text>\n"
        }
        out += "<text x=\"12\" y=\"\(top + layerCount * layout.cellHeight / 2)\" font-style=\"italic\" "
            + "transform=\"rotate(-90 12 \(top + layerCount * layout.cellHeight / 2))\" text-anchor=\"middle\">MoE layer</text>\n"
        out += "<text x=\"\(layout.left - 6)\" y=\"\(top - 6)\" text-anchor=\"end\" font-style=\"italic\">\(axis) →</text>\n"
        return out
    }

    private static func rowSummary(x: Int, y: Int, height: Int, text: String) -> String {
        "<text x=\"\(x)\" y=\"\(y + height / 2 + 4)\">\(xml(text))</text>\n"
    }

    private static func legend(x: Int, y: Int, maximum: Int, unit: String) -> String {
        var out = "<text x=\"\(x)\" y=\"\(y + 12)\">0</text>\n"
        out += "<rect x=\"\(x + 14)\" y=\"\(y + 2)\" width=\"14\" height=\"12\" fill=\"\(color(value: 0, maximum: maximum))\"/>\n"
        let steps = 10
        for step in 1...steps {
            let value = maximum * step / steps
            out += "<rect x=\"\(x + 34 + (step - 1) * 18)\" y=\"\(y + 2)\" width=\"18\" height=\"12\" "
                + "fill=\"\(color(value: max(1, value), maximum: max(1, maximum)))\"/>\n"
        }
        out += "<text x=\"\(x + 34 + steps * 18 + 6)\" y=\"\(y + 12)\">\(maximum) \(unit) (hottest)</text>\n"
        return out
    }

    // MARK: helpers

    static func fixed(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }

    static func xml(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(character)
            }
        }
        return out
    }

    static func csvField(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Right-aligned columns (the first left-aligned).
    static func aligned(_ rows: [[String]], indent: Int) -> [String] {
        let columns = rows.map(\.count).max() ?? 0
        let widths = (0..<columns).map { column in rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
        return rows.map { row in
            var line = String(repeating: " ", count: indent)
            for (column, field) in row.enumerated() {
                let padding = String(repeating: " ", count: widths[column] - field.count)
                line += column == 0 ? field + padding : "  " + padding + field
            }
            while line.hasSuffix(" ") { line.removeLast() }
            return line
        }
    }
}
