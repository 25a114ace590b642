// Placement: which worker holds which expert of which layer.
//
// Vocabulary: a *worker slot* is a position in the placement (0 ..< workerCount) that a registered
// worker fills; the placement maps every (layer, expert) to exactly one slot. Replicas (an expert on
// several workers) come with load balancing, a later issue.
public import Foundation
public import Tensors

/// Errors in a placement file or in a placement that does not fit the model.
public struct PlacementError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Maps every expert of every MoE layer to the worker slot that computes it.
public struct Placement: Sendable, Equatable {
    /// The name of each worker slot; a worker started with `--name` fills the slot of that name.
    public let workerNames: [String]
    /// `owner[layer][expert]` is the worker slot holding that expert.
    public let owner: [[Int]]

    public var workerCount: Int { workerNames.count }
    public var layerCount: Int { owner.count }
    public var expertCount: Int { owner.first?.count ?? 0 }

    /// The experts held by one worker slot, in (layer, expert) order.
    public func experts(ofWorker slot: Int) -> [LayerExpert] {
        var held: [LayerExpert] = []
        for (layer, owners) in owner.enumerated() {
            for (expert, holder) in owners.enumerated() where holder == slot {
                held.append(LayerExpert(layer: LayerIndex(layer), expert: ExpertID(expert)))
            }
        }
        return held
    }

    /// The slot holding `expert` of `layer`.
    public func worker(holding expert: ExpertID, in layer: LayerIndex) -> Int {
        owner[layer.rawValue][expert.rawValue]
    }

    /// Spreads experts evenly: in every layer, worker `w` holds a contiguous block of
    /// `expertCount / workerCount` experts (the first `expertCount % workerCount` workers hold one more).
    public static func even(
        layerCount: Int, expertCount: Int, workerNames: [String]
    ) throws(PlacementError) -> Placement {
        guard !workerNames.isEmpty else { throw PlacementError("a placement needs at least one worker") }
        guard workerNames.count <= expertCount else {
            throw PlacementError(
                "\(workerNames.count) workers but the model has only \(expertCount) experts per layer; "
                    + "every worker must hold at least one expert (use at most \(expertCount) workers)")
        }
        try checkUniqueNames(workerNames)
        let row = evenOwners(expertCount: expertCount, workerCount: workerNames.count)
        return Placement(workerNames: workerNames, owner: Array(repeating: row, count: layerCount))
    }

    /// Reads a placement file: `{"workers": [{"name": "w0", "experts": [[layer, expert], ...]}, ...]}`.
    /// Experts not listed are spread evenly over the workers not marked `"exclusive": true` (an
    /// exclusive worker holds exactly its list); an expert left with no worker, an expert listed twice,
    /// an id outside the model, or two workers with one name is an error naming the entry.
    public static func load(
        from url: URL, layerCount: Int, expertCount: Int
    ) throws -> Placement {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw PlacementError("\(url.path): cannot read placement file (\(error.localizedDescription))")
        }
        return try load(json: data, source: url.lastPathComponent, layerCount: layerCount, expertCount: expertCount)
    }

    /// Reads a placement from the JSON text of a placement file; `source` names it in errors.
    public static func load(
        json data: Data, source: String, layerCount: Int, expertCount: Int
    ) throws(PlacementError) -> Placement {
        let file: PlacementFile
        do { file = try JSONDecoder().decode(PlacementFile.self, from: data) } catch {
            throw PlacementError(
                "\(source): not a placement file; expected {\"workers\": [{\"name\": \"w0\", \"experts\": [[layer, expert], ...]}]} (\(error))"
            )
        }
        return try make(file: file, source: source, layerCount: layerCount, expertCount: expertCount)
    }

    static func make(
        file: PlacementFile, source: String, layerCount: Int, expertCount: Int
    ) throws(PlacementError) -> Placement {
        let names = file.workers.map(\.name)
        guard !names.isEmpty else { throw PlacementError("\(source): workers is empty; list at least one worker") }
        try checkUniqueNames(names, source: source)
        var owner = Array(repeating: Array(repeating: -1, count: expertCount), count: layerCount)
        for (slot, worker) in file.workers.enumerated() {
            for (index, pair) in worker.experts.enumerated() {
                let field = "\(source): workers[\(slot)] (\(worker.name)).experts[\(index)]"
                guard pair.count == 2 else {
                    throw PlacementError("\(field) is \(pair), but must be a [layer, expert] pair")
                }
                let (layer, expert) = (pair[0], pair[1])
                guard (0..<layerCount).contains(layer) else {
                    throw PlacementError("\(field): layer \(layer) does not exist; valid layers are 0...\(layerCount - 1)")
                }
                guard (0..<expertCount).contains(expert) else {
                    throw PlacementError(
                        "\(field): expert \(expert) does not exist; valid experts are 0...\(expertCount - 1)")
                }
                guard owner[layer][expert] == -1 else {
                    throw PlacementError(
                        "\(field): layer \(layer) expert \(expert) is already placed on \(names[owner[layer][expert]])")
                }
                owner[layer][expert] = slot
            }
        }
        // Unlisted experts: spread evenly over the workers that are not exclusive, in the same blocks
        // an even placement over those workers would use.
        let sharing = file.workers.indices.filter { file.workers[$0].exclusive != true }
        var missing: [String] = []
        for layer in 0..<layerCount {
            let fallback = sharing.isEmpty ? [] : evenOwners(expertCount: expertCount, workerCount: sharing.count)
            for expert in 0..<expertCount where owner[layer][expert] == -1 {
                if sharing.isEmpty {
                    missing.append("layer \(layer) expert \(expert)")
                } else {
                    owner[layer][expert] = sharing[fallback[expert]]
                }
            }
        }
        if !missing.isEmpty {
            let shown = missing.prefix(8).joined(separator: ", ") + (missing.count > 8 ? " and \(missing.count - 8) more" : "")
            throw PlacementError(
                "\(source): \(shown) \(missing.count == 1 ? "has" : "have") no worker; every worker is exclusive, "
                    + "so list \(missing.count == 1 ? "it" : "them") under a worker or add a worker that is not exclusive")
        }
        return Placement(workerNames: names, owner: owner)
    }

    private static func evenOwners(expertCount: Int, workerCount: Int) -> [Int] {
        let base = expertCount / workerCount
        let extra = expertCount % workerCount
        var owners: [Int] = []
        owners.reserveCapacity(expertCount)
        for worker in 0..<workerCount {
            let blockSize = base + (worker < extra ? 1 : 0)
            owners.append(contentsOf: Array(repeating: worker, count: blockSize))
        }
        return owners
    }

    private static func checkUniqueNames(_ names: [String], source: String = "placement") throws(PlacementError) {
        var seen = Set<String>()
        for name in names {
            guard !name.isEmpty else { throw PlacementError("\(source): a worker name is empty") }
            guard seen.insert(name).inserted else {
                throw PlacementError("\(source): two workers are named \"\(name)\"; worker names must be unique")
            }
        }
    }
}

/// The JSON shape of a placement file.
struct PlacementFile: Codable, Equatable {
    struct Worker: Codable, Equatable {
        var name: String
        var experts: [[Int]]
        /// True: the worker holds exactly `experts` and takes none of the unlisted ones.
        var exclusive: Bool? = nil
    }
    var workers: [Worker]
}
