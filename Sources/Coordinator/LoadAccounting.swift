// Expert-load accounting: what the coordinator measured at every step, summed over the whole run
// and over a sliding window, with each MoE layer's balance statistics.
//
// Vocabulary (README glossary): expert load = tokens routed to an expert (a token counts once at
// each of its top-k experts); worker load = (token, expert) rows a worker computed; balancedness =
// mean load ÷ max load over a layer's experts or workers (1 is even).
//
// Pure value types: steps come in with the time they happened (a `Duration` since the accounting
// started, read by the shell), reports go out. No clock reads, no I/O, no logging.
import Foundation
public import Tensors

/// What one worker did for one MoE layer of one step: one DISPATCH and its COMBINE.
public struct WorkerDispatchObservation: Sendable, Equatable {
    public var layer: LayerIndex
    /// The worker's name (its slot in the placement); replicas of an expert on several workers
    /// are accounted to each worker that computed rows.
    public var worker: String
    /// Token rows dispatched (one per token routed to at least one of the worker's experts).
    public var rowCount: Int
    /// (token, expert) pairs the worker computed: its compute load.
    public var expertRowCount: Int
    /// Bytes of the DISPATCH message (header + tensor frame).
    public var bytesSent: Int
    /// Bytes of the COMBINE message (header + tensor frame).
    public var bytesReceived: Int
    /// Compute time the worker reported in its COMBINE.
    public var computeMicroseconds: Int
    /// From sending the DISPATCH to receiving the COMBINE, as the coordinator measured it.
    public var roundTripMicroseconds: Int

    public init(
        layer: LayerIndex, worker: String, rowCount: Int, expertRowCount: Int, bytesSent: Int, bytesReceived: Int,
        computeMicroseconds: Int, roundTripMicroseconds: Int
    ) {
        self.layer = layer
        self.worker = worker
        self.rowCount = rowCount
        self.expertRowCount = expertRowCount
        self.bytesSent = bytesSent
        self.bytesReceived = bytesReceived
        self.computeMicroseconds = computeMicroseconds
        self.roundTripMicroseconds = roundTripMicroseconds
    }
}

/// One finished step as the accounting sees it.
public struct StepLoad: Sendable, Equatable {
    /// `[layer][expert]`: tokens of this step routed to each expert.
    public var tokensPerExpert: [[Int]]
    /// Prompt tokens fed in this step.
    public var prefillTokenCount: Int
    /// Decode tokens (one per decoding sequence) fed in this step.
    public var decodeTokenCount: Int
    /// One entry per (layer, worker) dispatch of the step; empty when the experts ran in-process.
    public var dispatches: [WorkerDispatchObservation]

    public init(
        tokensPerExpert: [[Int]], prefillTokenCount: Int, decodeTokenCount: Int,
        dispatches: [WorkerDispatchObservation] = []
    ) {
        self.tokensPerExpert = tokensPerExpert
        self.prefillTokenCount = prefillTokenCount
        self.decodeTokenCount = decodeTokenCount
        self.dispatches = dispatches
    }
}

/// Sums of a worker's dispatches for one layer (or over all layers).
public struct WorkerLayerLoad: Sendable, Equatable, Codable {
    /// DISPATCH/COMBINE exchanges (one per MoE layer of a step that routed rows to the worker).
    public var dispatchCount = 0
    /// Token rows dispatched.
    public var rowCount = 0
    /// (token, expert) pairs computed: the worker's compute load.
    public var expertRowCount = 0
    /// Bytes of the DISPATCH messages (header + tensor frames).
    public var bytesSent = 0
    /// Bytes of the COMBINE messages (header + tensor frames).
    public var bytesReceived = 0
    /// Compute time the worker reported.
    public var computeMicroseconds = 0
    /// DISPATCH sent to COMBINE received, as the coordinator measured it.
    public var roundTripMicroseconds = 0

    public init() {}

    mutating func add(_ observation: WorkerDispatchObservation) {
        dispatchCount += 1
        rowCount += observation.rowCount
        expertRowCount += observation.expertRowCount
        bytesSent += observation.bytesSent
        bytesReceived += observation.bytesReceived
        computeMicroseconds += observation.computeMicroseconds
        roundTripMicroseconds += observation.roundTripMicroseconds
    }

    mutating func add(_ other: WorkerLayerLoad) {
        dispatchCount += other.dispatchCount
        rowCount += other.rowCount
        expertRowCount += other.expertRowCount
        bytesSent += other.bytesSent
        bytesReceived += other.bytesReceived
        computeMicroseconds += other.computeMicroseconds
        roundTripMicroseconds += other.roundTripMicroseconds
    }

    enum CodingKeys: String, CodingKey {
        case dispatchCount = "dispatches"
        case rowCount = "rows"
        case expertRowCount = "expert_rows"
        case bytesSent = "bytes_sent"
        case bytesReceived = "bytes_received"
        case computeMicroseconds = "compute_us"
        case roundTripMicroseconds = "round_trip_us"
    }
}

/// Balance statistics of one layer's loads (per expert, or per worker).
public struct LoadStatistics: Sendable, Equatable, Codable {
    /// Mean ÷ max, 0...1 (1 is even); 0 when nothing was routed.
    public var balancedness: Double
    /// Max ÷ mean, ≥ 1; 0 when nothing was routed.
    public var maxOverMean: Double
    /// Population standard deviation ÷ mean; 0 when nothing was routed.
    public var coefficientOfVariation: Double
    /// Shannon entropy of the load shares ÷ ln(count), 0...1 (1 is even); 0 when nothing was
    /// routed, 1 for a single loaded entry.
    public var normalizedEntropy: Double
    /// Entries with no load.
    public var unusedCount: Int
    /// The sum of the loads.
    public var total: Int
    /// The index of the most loaded entry (the lowest index on a tie); nil when nothing was routed.
    public var hottest: Int?

    /// The statistics of `loads` (one entry per expert or worker; none negative).
    public init(_ loads: [Int]) {
        let total = loads.reduce(0, +)
        let maximum = loads.max() ?? 0
        self.total = total
        unusedCount = loads.filter { $0 == 0 }.count
        guard total > 0, !loads.isEmpty else {
            balancedness = 0
            maxOverMean = 0
            coefficientOfVariation = 0
            normalizedEntropy = 0
            hottest = nil
            return
        }
        let count = Double(loads.count)
        let mean = Double(total) / count
        balancedness = mean / Double(maximum)
        maxOverMean = Double(maximum) / mean
        let variance = loads.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / count
        coefficientOfVariation = variance.squareRoot() / mean
        if loads.count == 1 {
            normalizedEntropy = 1
        } else {
            var entropy = 0.0
            for load in loads where load > 0 {
                let share = Double(load) / Double(total)
                entropy -= share * log(share)
            }
            normalizedEntropy = entropy / log(count)
        }
        hottest = loads.firstIndex(of: maximum)
    }

    enum CodingKeys: String, CodingKey {
        case balancedness
        case maxOverMean = "max_over_mean"
        case coefficientOfVariation = "coefficient_of_variation"
        case normalizedEntropy = "normalized_entropy"
        case unusedCount = "unused"
        case total
        case hottest
    }
}

/// Sums over a period (the whole run, or one second of it).
public struct LoadTotals: Sendable, Equatable {
    /// Finished steps.
    public var stepCount = 0
    /// Prompt tokens fed.
    public var prefillTokenCount = 0
    /// Decode tokens fed (sampled tokens fed back; a request's last token is not fed).
    public var decodeTokenCount = 0
    /// `[layer][expert]`.
    public var tokensPerExpert: [[Int]]
    /// Per worker name, `[layer]`.
    public var workers: [String: [WorkerLayerLoad]] = [:]

    /// Zero totals for a model whose layer l has `expertCounts[l]` experts (a dense layer's row is empty).
    public init(expertCounts: [Int]) {
        tokensPerExpert = expertCounts.map { Array(repeating: 0, count: $0) }
    }

    mutating func add(_ step: StepLoad) {
        stepCount += 1
        prefillTokenCount += step.prefillTokenCount
        decodeTokenCount += step.decodeTokenCount
        for (layer, counts) in step.tokensPerExpert.enumerated() {
            for (expert, count) in counts.enumerated() { tokensPerExpert[layer][expert] += count }
        }
        let layerCount = tokensPerExpert.count
        for observation in step.dispatches {
            workers[observation.worker, default: Array(repeating: WorkerLayerLoad(), count: layerCount)][
                observation.layer.rawValue
            ].add(observation)
        }
    }

    mutating func add(_ other: LoadTotals) {
        stepCount += other.stepCount
        prefillTokenCount += other.prefillTokenCount
        decodeTokenCount += other.decodeTokenCount
        for (layer, counts) in other.tokensPerExpert.enumerated() {
            for (expert, count) in counts.enumerated() { tokensPerExpert[layer][expert] += count }
        }
        let layerCount = tokensPerExpert.count
        for (name, layers) in other.workers {
            var mine = workers[name] ?? Array(repeating: WorkerLayerLoad(), count: layerCount)
            for (layer, load) in layers.enumerated() { mine[layer].add(load) }
            workers[name] = mine
        }
    }
}

/// The load of one period, as `GET /v1/expert_load` reports it.
public struct LoadPeriodReport: Sendable, Equatable, Codable {
    /// One worker's load per layer and over all layers.
    public struct Worker: Sendable, Equatable, Codable {
        public var name: String
        /// `[layer]`.
        public var layers: [WorkerLayerLoad]
        /// Sums over the layers.
        public var total: WorkerLayerLoad
    }

    /// One layer's statistics.
    public struct Layer: Sendable, Equatable, Codable {
        public var layer: Int
        /// Over the layer's experts (tokens routed).
        public var experts: LoadStatistics
        /// Over the workers ((token, expert) rows computed); nil when the experts ran in-process.
        public var workers: LoadStatistics?
    }

    /// Finished steps.
    public var stepCount: Int
    /// Prompt tokens fed.
    public var prefillTokenCount: Int
    /// Decode tokens fed.
    public var decodeTokenCount: Int
    /// `[layer][expert]`: tokens routed; a token counts once at each of its top-k experts. Every
    /// decoder layer has a row; a dense layer's is empty.
    public var tokensPerExpert: [[Int]]
    /// The MoE layers (their real layer numbers): what `balancedness`, `workerBalancedness` and
    /// `layers` are indexed by.
    public var moeLayers: [Int]
    /// Per MoE layer (in `moeLayers` order): mean ÷ max over the layer's experts.
    public var balancedness: [Double]
    /// Per MoE layer: mean ÷ max over the workers' (token, expert) rows; empty without workers.
    public var workerBalancedness: [Double]
    /// Per MoE layer, labelled with its real layer number.
    public var layers: [Layer]
    /// In the order the workers were first seen (placement order).
    public var workers: [Worker]

    /// The report of `totals`, with the workers in `workerOrder` (names never seen are listed with
    /// zero load, so an idle worker lowers the worker balancedness as it should).
    public init(_ totals: LoadTotals, workerOrder: [String]) {
        stepCount = totals.stepCount
        prefillTokenCount = totals.prefillTokenCount
        decodeTokenCount = totals.decodeTokenCount
        tokensPerExpert = totals.tokensPerExpert
        let layerCount = totals.tokensPerExpert.count
        var names = workerOrder
        for name in totals.workers.keys.sorted() where !names.contains(name) { names.append(name) }
        workers = names.map { name in
            let layers = totals.workers[name] ?? Array(repeating: WorkerLayerLoad(), count: layerCount)
            var total = WorkerLayerLoad()
            for load in layers { total.add(load) }
            return Worker(name: name, layers: layers, total: total)
        }
        let workerList = workers
        moeLayers = (0..<layerCount).filter { !totals.tokensPerExpert[$0].isEmpty }
        layers = moeLayers.map { layer in
            Layer(
                layer: layer, experts: LoadStatistics(totals.tokensPerExpert[layer]),
                workers: workerList.isEmpty ? nil : LoadStatistics(workerList.map { $0.layers[layer].expertRowCount }))
        }
        balancedness = layers.map(\.experts.balancedness)
        workerBalancedness = layers.compactMap { $0.workers?.balancedness }
    }

    enum CodingKeys: String, CodingKey {
        case stepCount = "steps"
        case prefillTokenCount = "prefill_tokens"
        case decodeTokenCount = "decode_tokens"
        case tokensPerExpert = "tokens_per_expert"
        case moeLayers = "moe_layers"
        case balancedness
        case workerBalancedness = "worker_balancedness"
        case layers
        case workers
    }
}

/// `GET /v1/expert_load`: the whole run's load at the top level (`tokens_per_expert`,
/// `balancedness`, …) and the sliding window's under `window`.
public struct ExpertLoadReport: Sendable, Equatable, Codable {
    public var layerCount: Int
    public var expertCount: Int
    /// Seconds since the accounting started (the server's start).
    public var uptimeSeconds: Double
    /// Since the start.
    public var whole: LoadPeriodReport
    /// The last `windowSeconds` seconds.
    public var window: LoadPeriodReport
    public var windowSeconds: Int

    public init(
        layerCount: Int, expertCount: Int, uptimeSeconds: Double, whole: LoadPeriodReport, window: LoadPeriodReport,
        windowSeconds: Int
    ) {
        self.layerCount = layerCount
        self.expertCount = expertCount
        self.uptimeSeconds = uptimeSeconds
        self.whole = whole
        self.window = window
        self.windowSeconds = windowSeconds
    }

    enum CodingKeys: String, CodingKey {
        case layerCount = "layer_count"
        case expertCount = "expert_count"
        case uptimeSeconds = "uptime_seconds"
        case window
    }

    enum WindowKeys: String, CodingKey {
        case seconds
    }

    /// The window is encoded as a period report with an extra `seconds` key.
    public func encode(to encoder: any Encoder) throws {
        try whole.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(layerCount, forKey: .layerCount)
        try container.encode(expertCount, forKey: .expertCount)
        try container.encode(uptimeSeconds, forKey: .uptimeSeconds)
        let nested = container.superEncoder(forKey: .window)
        try window.encode(to: nested)
        var windowContainer = nested.container(keyedBy: WindowKeys.self)
        try windowContainer.encode(windowSeconds, forKey: .seconds)
    }

    public init(from decoder: any Decoder) throws {
        whole = try LoadPeriodReport(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        layerCount = try container.decode(Int.self, forKey: .layerCount)
        expertCount = try container.decode(Int.self, forKey: .expertCount)
        uptimeSeconds = try container.decode(Double.self, forKey: .uptimeSeconds)
        let nested = try container.superDecoder(forKey: .window)
        window = try LoadPeriodReport(from: nested)
        windowSeconds = try nested.container(keyedBy: WindowKeys.self).decode(Int.self, forKey: .seconds)
    }
}

/// A recording of per-step routing (`POST /v1/expert_load/record/start`, `…/stop`,
/// `GET /v1/expert_load/record`), like SGLang's expert-distribution recorder.
public struct ExpertLoadRecording: Sendable, Equatable, Codable {
    /// One recorded step.
    public struct Step: Sendable, Equatable, Codable {
        /// The step's number since the server started (1-based).
        public var step: Int
        /// When it finished, seconds since the server started.
        public var timeSeconds: Double
        public var prefillTokenCount: Int
        public var decodeTokenCount: Int
        /// `[layer][expert]`.
        public var tokensPerExpert: [[Int]]

        enum CodingKeys: String, CodingKey {
            case step
            case timeSeconds = "time_seconds"
            case prefillTokenCount = "prefill_tokens"
            case decodeTokenCount = "decode_tokens"
            case tokensPerExpert = "tokens_per_expert"
        }
    }

    public var isRecording: Bool
    /// Seconds since the server started; nil when nothing was ever recorded.
    public var startedSeconds: Double?
    public var stoppedSeconds: Double?
    /// Steps kept at most; later steps are counted in `droppedStepCount` only.
    public var stepLimit: Int
    public var droppedStepCount: Int
    public var layerCount: Int
    public var expertCount: Int
    public var steps: [Step]
    /// `[layer][expert]`: the sum over `steps`.
    public var tokensPerExpert: [[Int]]

    enum CodingKeys: String, CodingKey {
        case isRecording = "recording"
        case startedSeconds = "started_seconds"
        case stoppedSeconds = "stopped_seconds"
        case stepLimit = "step_limit"
        case droppedStepCount = "dropped_steps"
        case layerCount = "layer_count"
        case expertCount = "expert_count"
        case steps
        case tokensPerExpert = "tokens_per_expert"
    }
}

/// A sliding-window length that is out of range or cannot be parsed.
public struct LoadWindowError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
}

/// The coordinator's expert-load accounting, fed once per finished step. Pure value type.
public struct ExpertLoadAccounting: Sendable {
    /// The longest window a report can cover, in seconds: the per-second buckets kept.
    public let windowRetentionSeconds: Int
    /// Recorded (step × layer × expert) counts at most, which bounds the recording's size.
    public let recordingCellLimit: Int
    /// Experts per layer (0 for a dense layer).
    public let expertCounts: [Int]
    public var layerCount: Int { expertCounts.count }
    public var expertCount: Int { expertCounts.max() ?? 0 }
    /// Workers in the order they were registered or first seen.
    public private(set) var workerNames: [String] = []
    /// Since the start.
    public private(set) var whole: LoadTotals
    /// Per worker name: dispatch round-trip seconds since the start.
    public private(set) var roundTripHistograms: [String: Histogram] = [:]
    /// Per worker name: worker-reported compute seconds since the start.
    public private(set) var computeHistograms: [String: Histogram] = [:]

    /// One second's sums; ascending by `second`, only seconds that had steps.
    private var buckets: [(second: Int, totals: LoadTotals)] = []
    private var recording: ExpertLoadRecording

    /// Upper bounds for the dispatch histograms, in seconds: 50 µs to 10 s (a local ZeroMQ
    /// round trip is ≈ 120 µs).
    public static let dispatchBuckets: [Double] = [
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
    ]

    /// - Parameters:
    ///   - windowRetention: the longest sliding window (whole seconds, at least 1).
    ///   - recordingCellLimit: a recording keeps at most this many per-expert counts; the step
    ///     limit is this ÷ (layers × experts), at least 1.
    public init(layerCount: Int, expertCount: Int, windowRetention: Duration = .seconds(600), recordingCellLimit: Int = 1_000_000) {
        precondition(layerCount >= 0 && expertCount >= 0, "accounting needs non-negative layer and expert counts")
        self.init(
            expertCounts: Array(repeating: expertCount, count: layerCount), windowRetention: windowRetention,
            recordingCellLimit: recordingCellLimit)
    }

    /// Accounting for a model whose layer l has `expertCounts[l]` experts (0: a dense layer).
    public init(expertCounts: [Int], windowRetention: Duration = .seconds(600), recordingCellLimit: Int = 1_000_000) {
        precondition(expertCounts.allSatisfy { $0 >= 0 }, "accounting needs non-negative expert counts")
        self.expertCounts = expertCounts
        windowRetentionSeconds = max(1, Int(windowRetention.components.seconds))
        self.recordingCellLimit = recordingCellLimit
        whole = LoadTotals(expertCounts: expertCounts)
        let cells = expertCounts.reduce(0, +)
        recording = ExpertLoadRecording(
            isRecording: false, startedSeconds: nil, stoppedSeconds: nil,
            stepLimit: max(1, recordingCellLimit / max(1, cells)), droppedStepCount: 0,
            layerCount: expertCounts.count, expertCount: expertCounts.max() ?? 0, steps: [],
            tokensPerExpert: expertCounts.map { Array(repeating: 0, count: $0) })
    }

    /// Adds workers (placement order) so they are reported, with zero load, before they compute anything.
    public mutating func register(workers names: [String]) {
        for name in names where !workerNames.contains(name) { workerNames.append(name) }
    }

    /// Counts one finished step that ended `time` after the start.
    public mutating func record(_ step: StepLoad, at time: Duration) {
        precondition(
            step.tokensPerExpert.map(\.count) == expertCounts,
            "a step's tokensPerExpert must have \(expertCounts) experts per layer")
        precondition(
            step.dispatches.allSatisfy { (0..<layerCount).contains($0.layer.rawValue) },
            "a dispatch's layer must be below \(layerCount)")
        whole.add(step)
        for observation in step.dispatches {
            if !workerNames.contains(observation.worker) { workerNames.append(observation.worker) }
            roundTripHistograms[observation.worker, default: Histogram(upperBounds: Self.dispatchBuckets)]
                .observe(Double(observation.roundTripMicroseconds) / 1e6)
            computeHistograms[observation.worker, default: Histogram(upperBounds: Self.dispatchBuckets)]
                .observe(Double(observation.computeMicroseconds) / 1e6)
        }

        let second = Self.second(of: time)
        if let last = buckets.last, last.second == second {
            buckets[buckets.count - 1].totals.add(step)
        } else {
            var totals = LoadTotals(expertCounts: expertCounts)
            totals.add(step)
            buckets.append((second, totals))
        }
        let oldest = second - windowRetentionSeconds
        if let first = buckets.first, first.second <= oldest {
            buckets.removeAll { $0.second <= oldest }
        }

        guard recording.isRecording else { return }
        if recording.steps.count < recording.stepLimit {
            recording.steps.append(ExpertLoadRecording.Step(
                step: whole.stepCount, timeSeconds: Self.seconds(time), prefillTokenCount: step.prefillTokenCount,
                decodeTokenCount: step.decodeTokenCount, tokensPerExpert: step.tokensPerExpert))
            for (layer, counts) in step.tokensPerExpert.enumerated() {
                for (expert, count) in counts.enumerated() { recording.tokensPerExpert[layer][expert] += count }
            }
        } else {
            recording.droppedStepCount += 1
        }
    }

    /// Sums of the steps that ended in the last `windowSeconds` whole seconds before `time`
    /// (the current second included).
    public func windowTotals(windowSeconds: Int, at time: Duration) -> LoadTotals {
        let now = Self.second(of: time)
        var totals = LoadTotals(expertCounts: expertCounts)
        for bucket in buckets.reversed() {
            guard bucket.second > now - windowSeconds else { break }
            if bucket.second <= now { totals.add(bucket.totals) }
        }
        return totals
    }

    /// The report at `time`, with a sliding window of `windowSeconds` (1 ... `windowRetentionSeconds`).
    public func report(windowSeconds: Int, at time: Duration) -> ExpertLoadReport {
        precondition(
            (1...windowRetentionSeconds).contains(windowSeconds), "check the window with checkedWindowSeconds first")
        return ExpertLoadReport(
            layerCount: layerCount, expertCount: expertCount, uptimeSeconds: Self.seconds(time),
            whole: LoadPeriodReport(whole, workerOrder: workerNames),
            window: LoadPeriodReport(windowTotals(windowSeconds: windowSeconds, at: time), workerOrder: workerNames),
            windowSeconds: windowSeconds)
    }

    /// Parses a window length as the API and CLI accept it: a whole number of seconds, optionally
    /// with a unit (`90`, `90s`, `5m`, `1h`), between 1 s and the retention.
    /// - Throws: `LoadWindowError` naming the value and the valid range.
    public func checkedWindowSeconds(_ text: String) throws(LoadWindowError) -> Int {
        try Self.parseWindow(text, maximumSeconds: windowRetentionSeconds)
    }

    /// See `checkedWindowSeconds`.
    public static func parseWindow(_ text: String, maximumSeconds: Int) throws(LoadWindowError) -> Int {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        var digits = Substring(trimmed)
        var scale = 1
        if let unit = digits.last, !unit.isNumber {
            switch unit {
            case "s": scale = 1
            case "m": scale = 60
            case "h": scale = 3600
            default:
                throw LoadWindowError(
                    description: "window is \"\(text)\", but must be a whole number of seconds between 1 and \(maximumSeconds) "
                        + "with an optional unit s, m or h (e.g. 60s, 5m)")
            }
            digits = digits.dropLast()
        }
        guard let value = Int(digits), value >= 1, value <= maximumSeconds else {
            throw LoadWindowError(
                description: "window is \"\(text)\", but must be a whole number of seconds between 1 and \(maximumSeconds) "
                    + "(optionally with a unit s, m or h, e.g. 60s, 5m)")
        }
        let seconds = value * scale
        guard seconds <= maximumSeconds else {
            throw LoadWindowError(
                description: "window is \(seconds) s, but must be between 1 and \(maximumSeconds) s (the per-second history kept)")
        }
        return seconds
    }

    // MARK: recording

    /// Starts a new recording at `time`, discarding any earlier one.
    public mutating func startRecording(at time: Duration) {
        recording.isRecording = true
        recording.startedSeconds = Self.seconds(time)
        recording.stoppedSeconds = nil
        recording.steps = []
        recording.droppedStepCount = 0
        recording.tokensPerExpert = expertCounts.map { Array(repeating: 0, count: $0) }
    }

    /// Stops the recording at `time`; what was recorded stays readable. Stopping when not
    /// recording changes nothing.
    public mutating func stopRecording(at time: Duration) {
        guard recording.isRecording else { return }
        recording.isRecording = false
        recording.stoppedSeconds = Self.seconds(time)
    }

    /// The current (or last) recording.
    public var currentRecording: ExpertLoadRecording { recording }

    /// A recording's status without its steps, for the start/stop answers.
    public var recordingStatus: ExpertLoadRecording {
        var status = recording
        status.steps = []
        return status
    }

    // MARK: time

    static func second(of time: Duration) -> Int {
        let (seconds, attoseconds) = time.components
        return Int(seconds) - (attoseconds < 0 ? 1 : 0)
    }

    static func seconds(_ time: Duration) -> Double {
        let (seconds, attoseconds) = time.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
