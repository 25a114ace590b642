// The expert-load routes, the Prometheus balance families, and the report formats (table, CSV, SVG).
import Coordinator
import Foundation
import Hummingbird
import HummingbirdTesting
import Server
import Tensors
import Testing

#if canImport(FoundationXML)
import FoundationXML
#endif

/// A 2-layer, 4-expert report with workers w0, w1 and an idle w2; layer 0's expert 2 is hot.
func sampleLoadReport(workerName: String = "w1") -> ExpertLoadReport {
    var accounting = ExpertLoadAccounting(layerCount: 2, expertCount: 4)
    accounting.register(workers: ["w0", workerName, "w2"])
    func dispatch(_ layer: Int, _ worker: String, _ rows: Int) -> WorkerDispatchObservation {
        WorkerDispatchObservation(
            layer: LayerIndex(layer), worker: worker, rowCount: rows, expertRowCount: rows, bytesSent: 4096 * rows,
            bytesReceived: 2048 * rows, computeMicroseconds: 30 * rows, roundTripMicroseconds: 150 + 30 * rows)
    }
    accounting.record(
        StepLoad(
            tokensPerExpert: [[1, 0, 12, 1], [4, 3, 4, 3]], prefillTokenCount: 7, decodeTokenCount: 0,
            dispatches: [dispatch(0, "w0", 1), dispatch(0, workerName, 13), dispatch(1, "w0", 7), dispatch(1, workerName, 7)]),
        at: .seconds(10))
    return accounting.report(windowSeconds: 60, at: .seconds(10))
}

@Suite("Expert-load report formats")
struct LoadReportFormatTests {
    @Test("the heat scale runs from grey (no tokens) through pale yellow and orange to dark red (the hottest)")
    func colors() {
        #expect(LoadReportFormat.color(value: 0, maximum: 10) == "#e6e6e6")
        #expect(LoadReportFormat.color(value: 10, maximum: 10) == "#800026")
        #expect(LoadReportFormat.color(value: 5, maximum: 10) == "#fd8d3c")
        #expect(LoadReportFormat.color(value: 1, maximum: 1_000_000) == "#ffffb2")
    }

    @Test("the SVG is well-formed XML with one cell per (layer, expert) and (layer, worker), the hot cell dark red, labelled axes and legends")
    func svg() throws {
        let report = sampleLoadReport(workerName: "w<1>&")
        let svg = LoadReportFormat.svg(report)
        let cells = try SVGCells(svg)
        #expect(cells.fills.count == 2 * 4 + 2 * 3)
        #expect(cells.fills["expert-0-2"] == "#800026")
        #expect(cells.fills["expert-0-1"] == "#e6e6e6")
        #expect(cells.fills["expert-0-0"] == LoadReportFormat.color(value: 1, maximum: 12))
        #expect(cells.fills["worker-0-1"] == "#800026")
        #expect(cells.fills["worker-0-2"] == "#e6e6e6")
        for label in ["layer 0", "layer 1", "e0", "e3", "w0", "w&lt;1&gt;&amp;", "MoE layer", "12 tokens (hottest)", "13 rows (hottest)",
                      "bal. 0.29"] {
            #expect(svg.contains(">\(label)<"), "missing label \(label)")
        }
        let layout = LoadReportFormat.HeatmapLayout(layerCount: 2, expertCount: 4, workerCount: 3)
        #expect(svg.contains("width=\"\(layout.width)\" height=\"\(layout.height)\""))
        #expect(cells.frames["expert-1-3"] == [layout.left + 3 * layout.cellWidth, layout.expertsTop + layout.cellHeight])
    }

    @Test("the table lists the hottest expert first, each layer's statistics and each worker's load and latency")
    func table() throws {
        let table = LoadReportFormat.table(sampleLoadReport(), hottest: 3)
        let lines = table.split(separator: "\n").map(String.init)
        let hottest = try #require(lines.firstIndex { $0.hasPrefix("Hottest experts") })
        #expect(lines[hottest + 2].split(separator: " ").map(String.init) == ["0", "2", "12", "3.43", "12"])
        #expect(table.contains("Per layer"))
        // Layer 0: loads 1, 0, 12, 1 → balancedness 3.5 / 12 = 0.292, one unused expert, hottest e2.
        #expect(lines.contains { $0.split(separator: " ").prefix(7) == ["0", "0.292", "3.43", "1.41", "0.367", "1", "e2"] }, "\(table)")
        // w1 computed 20 of the 28 expert rows; its round trip averages (540 + 360) / 2 µs.
        #expect(lines.contains { $0.split(separator: " ") == ["w1", "2", "20", "20", "71.4%", "0.08", "0.04", "0.300", "0.450"] }, "\(table)")
        #expect(lines.contains { $0.split(separator: " ") == ["w2", "0", "0", "0", "0.0%", "0.00", "0.00", "-", "-"] }, "\(table)")
    }

    @Test("CSV has one row per (period, layer, expert), (period, layer, worker) and layer balancedness")
    func csv() {
        let csv = LoadReportFormat.csv(sampleLoadReport(workerName: "w,1"))
        let lines = csv.split(separator: "\n").map(String.init)
        #expect(lines.first == LoadReportFormat.csvHeader)
        #expect(lines.count == 1 + 2 * 2 * (4 + 3 + 2))
        #expect(lines.contains("run,0,expert,2,12,,,,,,,"))
        #expect(lines.contains("window,1,worker,\"w,1\",7,7,1,28672,14336,210,360,"))
        #expect(lines.contains { $0.hasPrefix("run,0,layer_experts,,14,,,,,,,0.291666") })
        #expect(lines.allSatisfy { $0.replacingOccurrences(of: "\"w,1\"", with: "w").split(separator: ",", omittingEmptySubsequences: false).count == 12 })
    }
}

/// Fill and position of every `rect` with an id, read with an XML parser (so the SVG must be well-formed).
private struct SVGCells {
    var fills: [String: String] = [:]
    var frames: [String: [Int]] = [:]

    init(_ svg: String) throws {
        let parser = XMLParser(data: Data(svg.utf8))
        let delegate = Delegate()
        parser.delegate = delegate
        guard parser.parse() else {
            throw TestFailure("the SVG is not well-formed XML: \(parser.parserError.map { "\($0)" } ?? "?")")
        }
        fills = delegate.fills
        frames = delegate.frames
    }

    private final class Delegate: NSObject, XMLParserDelegate {
        var fills: [String: String] = [:]
        var frames: [String: [Int]] = [:]
        func parser(
            _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
            attributes: [String: String] = [:]
        ) {
            guard elementName == "rect", let id = attributes["id"] else { return }
            fills[id] = attributes["fill"]
            frames[id] = [Int(attributes["x"] ?? "") ?? -1, Int(attributes["y"] ?? "") ?? -1]
        }
    }
}

private struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

@Suite("Expert-load routes")
struct ExpertLoadRouteTests {
    static func loadedService() -> FakeGenerationService {
        let service = FakeGenerationService()
        service.recordLoad(
            StepLoad(
                tokensPerExpert: [[3, 1, 0, 0], [1, 1, 1, 1]], prefillTokenCount: 4, decodeTokenCount: 0,
                dispatches: [
                    WorkerDispatchObservation(
                        layer: LayerIndex(0), worker: "w0", rowCount: 4, expertRowCount: 4, bytesSent: 800,
                        bytesReceived: 600, computeMicroseconds: 90, roundTripMicroseconds: 400)
                ]),
            at: .seconds(5))
        return service
    }

    @Test("GET /v1/expert_load answers tokens_per_expert, balancedness, the window and the workers")
    func report() async throws {
        let service = Self.loadedService()
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.get("/v1/expert_load?window=2m")
            #expect(response.status == .ok)
            let json = try response.json()
            #expect(json["tokens_per_expert"] as? [[Int]] == [[3, 1, 0, 0], [1, 1, 1, 1]])
            #expect(json["balancedness"] as? [Double] == [1.0 / 3.0, 1])
            let window = try #require(json["window"] as? [String: Any])
            #expect(window["seconds"] as? Int == 120)
            #expect(window["tokens_per_expert"] as? [[Int]] == [[3, 1, 0, 0], [1, 1, 1, 1]])
            let workers = try #require(json["workers"] as? [[String: Any]])
            #expect(workers.map { $0["name"] as? String } == ["w0"])
        }
    }

    @Test("a bad window is refused with 400 naming the parameter and the valid range")
    func badWindow() async throws {
        try await makeTestApplication(Self.loadedService()).test(.router) { client in
            let response = try await client.get("/v1/expert_load?window=2h")
            #expect(response.status == .badRequest)
            let error = try response.errorObject()
            #expect(error["param"] as? String == "window")
            #expect((error["message"] as? String)?.contains("between 1 and 600") == true, "\(error)")
        }
    }

    @Test("recording: start, steps, stop, read; the recording holds only the steps between start and stop")
    func recording() async throws {
        let service = Self.loadedService()
        try await makeTestApplication(service).test(.router) { client in
            let started = try await client.post("/v1/expert_load/record/start", "")
            #expect(started.status == .ok)
            #expect(try started.json()["recording"] as? Bool == true)
            service.recordLoad(
                StepLoad(tokensPerExpert: [[0, 0, 1, 0], [0, 0, 0, 1]], prefillTokenCount: 0, decodeTokenCount: 1),
                at: .seconds(6))
            let stopped = try await client.post("/v1/expert_load/record/stop", "")
            #expect(try stopped.json()["recording"] as? Bool == false)
            service.recordLoad(
                StepLoad(tokensPerExpert: [[1, 0, 0, 0], [1, 0, 0, 0]], prefillTokenCount: 0, decodeTokenCount: 1),
                at: .seconds(7))
            let read = try await client.get("/v1/expert_load/record")
            let json = try read.json()
            let steps = try #require(json["steps"] as? [[String: Any]])
            #expect(steps.count == 1)
            #expect(steps.first?["tokens_per_expert"] as? [[Int]] == [[0, 0, 1, 0], [0, 0, 0, 1]])
            #expect(json["tokens_per_expert"] as? [[Int]] == [[0, 0, 1, 0], [0, 0, 0, 1]])
            #expect(json["step_limit"] as? Int == 125_000)
        }
    }

    @Test("the expert-load routes follow the API key like every /v1 route")
    func apiKey() async throws {
        try await makeTestApplication(Self.loadedService(), apiKey: "secret").test(.router) { client in
            #expect(try await client.get("/v1/expert_load").status == .unauthorized)
            #expect(try await client.post("/v1/expert_load/record/start", "").status == .unauthorized)
            #expect(try await client.get("/v1/expert_load/record").status == .unauthorized)
            let allowed = try await client.get("/v1/expert_load", headers: [.authorization: "Bearer secret"])
            #expect(allowed.status == .ok)
        }
    }

    @Test("/metrics has per-layer balancedness gauges and per-worker dispatch latency histograms")
    func prometheus() async throws {
        let service = FakeGenerationService()
        var metrics = EngineMetrics()
        metrics.layerBalancedness = [0.5, 1]
        metrics.layerWorkerBalancedness = [0.25, 0.75]
        var roundTrip = Histogram(upperBounds: ExpertLoadAccounting.dispatchBuckets)
        roundTrip.observe(0.0003)
        roundTrip.observe(0.02)
        var load = WorkerLayerLoad()
        load.rowCount = 9
        metrics.workers = [
            WorkerMetrics(
                name: "w0", load: load, roundTripSeconds: roundTrip,
                computeSeconds: Histogram(upperBounds: ExpertLoadAccounting.dispatchBuckets))
        ]
        service.setMetrics(metrics)
        try await makeTestApplication(service).test(.router) { client in
            let text = try await client.get("/metrics").text
            #expect(text.contains("# TYPE switchyard_layer_balancedness gauge\n"))
            #expect(text.contains("switchyard_layer_balancedness{layer=\"0\"} 0.5\n"))
            #expect(text.contains("switchyard_layer_worker_balancedness{layer=\"1\"} 0.75\n"))
            #expect(text.contains("# TYPE switchyard_worker_dispatch_seconds histogram\n"))
            #expect(text.contains("switchyard_worker_dispatch_seconds_bucket{worker=\"w0\",le=\"0.00025\"} 0\n"))
            #expect(text.contains("switchyard_worker_dispatch_seconds_bucket{worker=\"w0\",le=\"0.0005\"} 1\n"))
            #expect(text.contains("switchyard_worker_dispatch_seconds_bucket{worker=\"w0\",le=\"+Inf\"} 2\n"))
            #expect(text.contains("switchyard_worker_dispatch_seconds_count{worker=\"w0\"} 2\n"))
            #expect(text.contains("switchyard_worker_rows_total{worker=\"w0\"} 9\n"))
            // The request histograms keep their unlabelled form.
            #expect(text.contains("switchyard_request_latency_seconds_count 0\n"))
        }
    }
}
