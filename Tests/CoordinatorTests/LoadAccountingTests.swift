import Foundation
import Models
import Testing
import Tensors

@testable import Coordinator

/// Tolerance for statistics computed in Double from exact integer inputs.
private let statisticsTolerance = 1e-12

@Suite("Expert-load statistics")
struct LoadStatisticsTests {
    @Test("a skewed layer: balancedness is mean ÷ max, max ÷ mean, CV, normalised entropy and unused experts are exact")
    func skewed() {
        // loads 6, 2, 0, 0: mean 2, max 6, variance (16 + 0 + 4 + 4) / 4 = 6, shares 3/4 and 1/4.
        let stats = LoadStatistics([6, 2, 0, 0])
        #expect(abs(stats.balancedness - 1.0 / 3.0) < statisticsTolerance)
        #expect(abs(stats.maxOverMean - 3) < statisticsTolerance)
        #expect(abs(stats.coefficientOfVariation - 6.0.squareRoot() / 2) < statisticsTolerance)
        let entropy = -(0.75 * log(0.75) + 0.25 * log(0.25)) / log(4.0)
        #expect(abs(stats.normalizedEntropy - entropy) < statisticsTolerance)
        #expect(stats.unusedCount == 2)
        #expect(stats.total == 8)
        #expect(stats.hottest == 0)
    }

    @Test("an even layer has balancedness 1, max ÷ mean 1, CV 0 and entropy 1")
    func even() {
        let stats = LoadStatistics([3, 3, 3, 3])
        #expect(stats.balancedness == 1)
        #expect(stats.maxOverMean == 1)
        #expect(stats.coefficientOfVariation == 0)
        #expect(abs(stats.normalizedEntropy - 1) < statisticsTolerance)
        #expect(stats.unusedCount == 0)
    }

    @Test("an idle layer reports zeros and no hottest expert; a tie names the lowest index")
    func idleAndTie() {
        let idle = LoadStatistics([0, 0, 0])
        #expect(idle == LoadStatistics(
            balancedness: 0, maxOverMean: 0, coefficientOfVariation: 0, normalizedEntropy: 0, unusedCount: 3, total: 0,
            hottest: nil))
        #expect(LoadStatistics([1, 5, 5]).hottest == 1)
        #expect(LoadStatistics([7]).normalizedEntropy == 1)
    }
}

extension LoadStatistics {
    init(
        balancedness: Double, maxOverMean: Double, coefficientOfVariation: Double, normalizedEntropy: Double,
        unusedCount: Int, total: Int, hottest: Int?
    ) {
        self.init([])
        self.balancedness = balancedness
        self.maxOverMean = maxOverMean
        self.coefficientOfVariation = coefficientOfVariation
        self.normalizedEntropy = normalizedEntropy
        self.unusedCount = unusedCount
        self.total = total
        self.hottest = hottest
    }
}

@Suite("Expert-load accounting")
struct LoadAccountingTests {
    /// A step of a 2-layer, 3-expert model.
    static func step(_ tokens: [[Int]], prefill: Int = 0, decode: Int = 1, dispatches: [WorkerDispatchObservation] = [])
        -> StepLoad
    {
        StepLoad(tokensPerExpert: tokens, prefillTokenCount: prefill, decodeTokenCount: decode, dispatches: dispatches)
    }

    static func dispatch(
        _ layer: Int, _ worker: String, rows: Int, expertRows: Int, sent: Int = 100, received: Int = 50,
        compute: Int = 10, roundTrip: Int = 200
    ) -> WorkerDispatchObservation {
        WorkerDispatchObservation(
            layer: LayerIndex(layer), worker: worker, rowCount: rows, expertRowCount: expertRows, bytesSent: sent,
            bytesReceived: received, computeMicroseconds: compute, roundTripMicroseconds: roundTrip)
    }

    @Test("the whole run sums every step; the window holds only the steps of its last seconds")
    func wholeAndWindow() {
        var accounting = ExpertLoadAccounting(layerCount: 2, expertCount: 3)
        accounting.record(Self.step([[2, 0, 0], [1, 1, 0]], prefill: 2, decode: 0), at: .milliseconds(1500))
        accounting.record(Self.step([[1, 0, 0], [0, 0, 1]]), at: .milliseconds(2200))
        accounting.record(Self.step([[0, 0, 1], [0, 1, 0]]), at: .milliseconds(9000))

        #expect(accounting.whole.tokensPerExpert == [[3, 0, 1], [1, 2, 1]])
        #expect(accounting.whole.stepCount == 3)
        #expect(accounting.whole.prefillTokenCount == 2)
        #expect(accounting.whole.decodeTokenCount == 2)

        // At 9.5 s, a 2 s window covers seconds 8 and 9; a 10 s window covers all.
        let short = accounting.windowTotals(windowSeconds: 2, at: .milliseconds(9500))
        #expect(short.tokensPerExpert == [[0, 0, 1], [0, 1, 0]])
        #expect(short.stepCount == 1)
        let long = accounting.windowTotals(windowSeconds: 10, at: .milliseconds(9500))
        #expect(long.tokensPerExpert == [[3, 0, 1], [1, 2, 1]])
        // At 8 s, a 7 s window covers seconds 2 ... 8: the second step only.
        let middle = accounting.windowTotals(windowSeconds: 7, at: .seconds(8))
        #expect(middle.tokensPerExpert == [[1, 0, 0], [0, 0, 1]])
        // Long after, the window is empty but the whole run is not.
        let later = accounting.report(windowSeconds: 60, at: .seconds(200))
        #expect(later.window.tokensPerExpert == [[0, 0, 0], [0, 0, 0]])
        #expect(later.whole.tokensPerExpert == [[3, 0, 1], [1, 2, 1]])
        #expect(later.whole.balancedness.map { ($0 * 1e9).rounded() / 1e9 } == [0.444444444, 0.666666667])
    }

    @Test("a dense layer has an empty row; statistics list only MoE layers, labelled with their real numbers")
    func denseLayers() throws {
        var accounting = ExpertLoadAccounting(expertCounts: [3, 0, 3])
        accounting.record(
            Self.step(
                [[2, 0, 0], [], [1, 1, 0]],
                dispatches: [Self.dispatch(0, "w0", rows: 2, expertRows: 2), Self.dispatch(2, "w1", rows: 2, expertRows: 2)]),
            at: .seconds(1))
        let report = accounting.report(windowSeconds: 60, at: .seconds(2))
        #expect(report.whole.tokensPerExpert == [[2, 0, 0], [], [1, 1, 0]])
        #expect(report.whole.moeLayers == [0, 2])
        #expect(report.whole.layers.map(\.layer) == [0, 2])
        #expect(report.whole.balancedness.map { ($0 * 1e9).rounded() / 1e9 } == [0.333333333, 0.666666667])
        #expect(report.whole.workerBalancedness.count == 2)
        // The JSON says which layers the per-layer arrays index.
        let json = try #require(String(data: JSONEncoder().encode(report), encoding: .utf8))
        #expect(json.contains("\"moe_layers\":[0,2]"))
    }

    @Test("generate's load table says a dense layer is dense and counts the MoE layers' experts")
    func denseLayerTable() {
        var load = ExpertLoad(expertCounts: [2, 0, 2])
        let routing = RoutingDecision(tokenCount: 2, expertsPerToken: 1, expertIDs: [1, 1], weights: [1, 1])
        load.record(routing, layer: LayerIndex(0), phase: .prefill)
        load.record(routing, layer: LayerIndex(2), phase: .decode)
        #expect(load.total == [[0, 2], [], [0, 2]])
        let lines = load.table(workers: []).split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("     1  dense") })
        #expect(lines.contains { $0.hasPrefix("     2    0    2") })
    }

    @Test("seconds older than the retention are dropped from the window but stay in the whole run")
    func retention() {
        var accounting = ExpertLoadAccounting(layerCount: 2, expertCount: 3, windowRetention: .seconds(5))
        accounting.record(Self.step([[1, 0, 0], [1, 0, 0]]), at: .seconds(1))
        accounting.record(Self.step([[0, 1, 0], [0, 1, 0]]), at: .seconds(9))
        #expect(accounting.windowTotals(windowSeconds: 5, at: .seconds(9)).tokensPerExpert == [[0, 1, 0], [0, 1, 0]])
        #expect(accounting.whole.tokensPerExpert == [[1, 1, 0], [1, 1, 0]])
    }

    @Test("per (layer, worker): rows, expert rows, bytes, compute and round-trip time add up; an idle registered worker counts as zero")
    func workers() {
        var accounting = ExpertLoadAccounting(layerCount: 2, expertCount: 3)
        accounting.register(workers: ["w0", "w1", "w2"])
        accounting.record(
            Self.step(
                [[2, 1, 1], [2, 2, 0]],
                dispatches: [
                    Self.dispatch(0, "w0", rows: 2, expertRows: 3, sent: 1000, received: 600, compute: 40, roundTrip: 300),
                    Self.dispatch(0, "w1", rows: 1, expertRows: 1, sent: 500, received: 300, compute: 20, roundTrip: 250),
                    Self.dispatch(1, "w0", rows: 2, expertRows: 4, sent: 1100, received: 600, compute: 50, roundTrip: 320),
                ]), at: .seconds(1))
        accounting.record(
            Self.step([[1, 0, 0], [0, 0, 1]], dispatches: [Self.dispatch(0, "w0", rows: 1, expertRows: 1, roundTrip: 180)]),
            at: .seconds(2))

        let report = accounting.report(windowSeconds: 60, at: .seconds(2))
        #expect(report.whole.workers.map(\.name) == ["w0", "w1", "w2"])
        let w0 = report.whole.workers[0]
        #expect(w0.layers[0].dispatchCount == 2)
        #expect(w0.layers[0].rowCount == 3)
        #expect(w0.layers[0].expertRowCount == 4)
        #expect(w0.layers[0].bytesSent == 1100)
        #expect(w0.layers[0].bytesReceived == 650)
        #expect(w0.layers[0].computeMicroseconds == 50)
        #expect(w0.layers[0].roundTripMicroseconds == 480)
        #expect(w0.total.expertRowCount == 8)
        #expect(report.whole.workers[2].total == WorkerLayerLoad())
        // Layer 0: expert rows 4, 1, 0 → mean 5/3, max 4; layer 1: 4, 0, 0 → mean 4/3, max 4.
        #expect(abs(report.whole.workerBalancedness[0] - 5.0 / 12.0) < statisticsTolerance)
        #expect(abs(report.whole.workerBalancedness[1] - 1.0 / 3.0) < statisticsTolerance)
        #expect(report.whole.layers[1].workers?.unusedCount == 2)
        #expect(report.whole.layers[0].workers?.hottest == 0)
        #expect(accounting.roundTripHistograms["w0"]?.count == 3)
        #expect(abs((accounting.roundTripHistograms["w0"]?.sum ?? 0) - 0.0008) < statisticsTolerance)
        #expect(accounting.computeHistograms["w1"]?.count == 1)
    }

    @Test("without workers there are no worker statistics")
    func inProcess() {
        var accounting = ExpertLoadAccounting(layerCount: 2, expertCount: 3)
        accounting.record(Self.step([[1, 1, 0], [0, 1, 1]]), at: .seconds(1))
        let report = accounting.report(windowSeconds: 60, at: .seconds(1))
        #expect(report.whole.workers.isEmpty)
        #expect(report.whole.workerBalancedness.isEmpty)
        #expect(report.whole.layers.allSatisfy { $0.workers == nil })
    }

    @Test("a recording holds the steps between start and stop, up to its step limit, and counts the dropped ones")
    func recording() {
        // 6 cells per step, 13 cells at most: a limit of 2 steps.
        var accounting = ExpertLoadAccounting(layerCount: 2, expertCount: 3, recordingCellLimit: 13)
        accounting.record(Self.step([[1, 0, 0], [1, 0, 0]]), at: .seconds(1))
        #expect(accounting.currentRecording.steps.isEmpty)
        #expect(!accounting.currentRecording.isRecording)

        accounting.startRecording(at: .seconds(2))
        accounting.record(Self.step([[0, 1, 0], [0, 1, 0]], prefill: 1, decode: 0), at: .milliseconds(2500))
        accounting.record(Self.step([[0, 0, 1], [0, 0, 1]]), at: .seconds(3))
        accounting.record(Self.step([[1, 0, 0], [1, 0, 0]]), at: .seconds(4))
        accounting.stopRecording(at: .seconds(5))
        accounting.record(Self.step([[1, 0, 0], [1, 0, 0]]), at: .seconds(6))

        let recording = accounting.currentRecording
        #expect(!recording.isRecording)
        #expect(recording.stepLimit == 2)
        #expect(recording.steps.map(\.step) == [2, 3])
        #expect(recording.steps.map(\.timeSeconds) == [2.5, 3])
        #expect(recording.steps[0].prefillTokenCount == 1)
        #expect(recording.droppedStepCount == 1)
        #expect(recording.tokensPerExpert == [[0, 1, 1], [0, 1, 1]])
        #expect(recording.startedSeconds == 2)
        #expect(recording.stoppedSeconds == 5)
        #expect(accounting.recordingStatus.steps.isEmpty)

        accounting.startRecording(at: .seconds(7))
        #expect(accounting.currentRecording.steps.isEmpty)
        #expect(accounting.currentRecording.droppedStepCount == 0)
        #expect(accounting.currentRecording.stoppedSeconds == nil)
    }

    @Test("window lengths parse with units and are refused out of range with the valid range", arguments: [
        ("60s", 60), ("5m", 300), ("90", 90), ("10m", 600), (" 1s ", 1),
    ])
    func windowParsing(text: String, seconds: Int) throws {
        let accounting = ExpertLoadAccounting(layerCount: 1, expertCount: 2)
        #expect(try accounting.checkedWindowSeconds(text) == seconds)
    }

    @Test("bad window lengths name the value and what is valid", arguments: ["0", "11m", "abc", "-5", "5.5s", "2d", ""])
    func badWindow(text: String) {
        let accounting = ExpertLoadAccounting(layerCount: 1, expertCount: 2)
        do throws(LoadWindowError) {
            _ = try accounting.checkedWindowSeconds(text)
            Issue.record("\(text) was accepted")
        } catch {
            #expect(error.description.contains("600"), "\(error)")
        }
    }

    @Test("the report's JSON has tokens_per_expert and balancedness at the top, the window under window, and decodes back")
    func json() throws {
        var accounting = ExpertLoadAccounting(layerCount: 2, expertCount: 3)
        accounting.register(workers: ["w0"])
        accounting.record(
            Self.step([[2, 0, 0], [1, 1, 0]], dispatches: [Self.dispatch(0, "w0", rows: 2, expertRows: 2)]),
            at: .seconds(3))
        let report = accounting.report(windowSeconds: 30, at: .seconds(4))
        let data = try JSONEncoder().encode(report)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["tokens_per_expert"] as? [[Int]] == [[2, 0, 0], [1, 1, 0]])
        #expect(object["balancedness"] as? [Double] == report.whole.balancedness)
        #expect(object["layer_count"] as? Int == 2)
        #expect(object["expert_count"] as? Int == 3)
        let window = try #require(object["window"] as? [String: Any])
        #expect(window["seconds"] as? Int == 30)
        #expect(window["tokens_per_expert"] as? [[Int]] == [[2, 0, 0], [1, 1, 0]])
        let workers = try #require(object["workers"] as? [[String: Any]])
        #expect(workers.first?["name"] as? String == "w0")
        #expect(try JSONDecoder().decode(ExpertLoadReport.self, from: data) == report)
    }
}
