// Placement: which worker holds which expert of which layer.
//
// Vocabulary: a *worker slot* is a position in the placement (0 ..< workerCount) that a registered
// worker fills; the placement maps every (layer, expert) to one or more slots. An expert held by
// several slots has *replicas*: the dispatch plan splits its rows between them.
public import Foundation
public import Tensors

/// Errors in a placement file or in a placement that does not fit the model.
public struct PlacementError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Maps every expert of every MoE layer to the worker slots that compute it.
public struct Placement: Sendable, Equatable {
    /// The name of each worker slot; a worker started with `--name` fills the slot of that name.
    public let workerNames: [String]
    /// `holders[layer][expert]` is the ascending, non-empty list of worker slots holding that expert.
    public let holders: [[[Int]]]

    public var workerCount: Int { workerNames.count }
    public var layerCount: Int { holders.count }
    public var expertCount: Int { holders.map(\.count).max() ?? 0 }

    /// Experts per layer: 0 for a dense layer (it holds no experts).
    public var expertCounts: [Int] { holders.map(\.count) }

    /// A placement from explicit holder lists.
    /// - Throws: `PlacementError` when a list is empty, names a slot outside `workerNames`, or
    ///   names a slot twice, or when the layers do not all have the same expert count.
    public init(workerNames: [String], holders: [[[Int]]]) throws(PlacementError) {
        try Self.checkUniqueNames(workerNames)
        for (layer, experts) in holders.enumerated() {
            for (expert, slots) in experts.enumerated() {
                guard !slots.isEmpty else { throw PlacementError("layer \(layer) expert \(expert) has no worker") }
                guard slots.allSatisfy({ (0..<workerNames.count).contains($0) }) else {
                    throw PlacementError("layer \(layer) expert \(expert) names a worker slot outside 0..<\(workerNames.count)")
                }
                guard Set(slots).count == slots.count else {
                    throw PlacementError("layer \(layer) expert \(expert) lists a worker twice")
                }
            }
        }
        self.workerNames = workerNames
        self.holders = holders.map { $0.map { $0.sorted() } }
    }

    private init(validatedNames workerNames: [String], holders: [[[Int]]]) {
        self.workerNames = workerNames
        self.holders = holders
    }

    /// The experts held by one worker slot, in (layer, expert) order.
    public func experts(ofWorker slot: Int) -> [LayerExpert] {
        var held: [LayerExpert] = []
        for (layer, experts) in holders.enumerated() {
            for (expert, slots) in experts.enumerated() where slots.contains(slot) {
                held.append(LayerExpert(layer: LayerIndex(layer), expert: ExpertID(expert)))
            }
        }
        return held
    }

    /// The slots holding `expert` of `layer`, ascending (more than one for a replicated expert).
    public func workers(holding expert: ExpertID, in layer: LayerIndex) -> [Int] {
        holders[layer.rawValue][expert.rawValue]
    }

    /// The same placement with the worker slots in the order of `names` (a permutation of `workerNames`).
    /// - Throws: `PlacementError` naming the missing or unknown workers when `names` is not a permutation.
    public func reordered(as names: [String]) throws(PlacementError) -> Placement {
        guard names.count == workerNames.count, Set(names) == Set(workerNames) else {
            let missing = names.filter { !workerNames.contains($0) }
            let unknown = workerNames.filter { !names.contains($0) }
            throw PlacementError(
                "the placement must name the same workers as the running one (\(names.joined(separator: ", "))); "
                    + (missing.isEmpty ? "" : "missing: \(missing.joined(separator: ", ")); ")
                    + (unknown.isEmpty ? "" : "unknown: \(unknown.joined(separator: ", "))"))
        }
        let newSlot = workerNames.map { names.firstIndex(of: $0)! }
        return Placement(
            validatedNames: names, holders: holders.map { $0.map { $0.map { newSlot[$0] }.sorted() } })
    }

    /// Spreads experts evenly: in every layer, worker `w` holds a contiguous block of
    /// `expertCount / workerCount` experts (the first `expertCount % workerCount` workers hold one more).
    public static func even(
        layerCount: Int, expertCount: Int, workerNames: [String]
    ) throws(PlacementError) -> Placement {
        try even(expertCounts: Array(repeating: expertCount, count: layerCount), workerNames: workerNames)
    }

    /// An even placement of a model whose layer l has `expertCounts[l]` experts (0: a dense layer).
    public static func even(expertCounts: [Int], workerNames: [String]) throws(PlacementError) -> Placement {
        let expertCount = expertCounts.filter { $0 > 0 }.min() ?? 0
        guard !workerNames.isEmpty else { throw PlacementError("a placement needs at least one worker") }
        guard workerNames.count <= expertCount else {
            throw PlacementError(
                "\(workerNames.count) workers but the model has only \(expertCount) experts per layer; "
                    + "every worker must hold at least one expert (use at most \(expertCount) workers)")
        }
        try checkUniqueNames(workerNames)
        let holders = expertCounts.map { count in
            count == 0 ? [] : evenOwners(expertCount: count, workerCount: workerNames.count).map { [$0] }
        }
        return Placement(validatedNames: workerNames, holders: holders)
    }

    /// An even placement with every expert on `replicas` workers: expert e's first holder is its
    /// owner in the even split, the others the next slots after it (so replicas land on distinct
    /// workers and every worker holds about `replicas × experts ÷ workers` experts of a layer).
    /// - Throws: `PlacementError` when `replicas` is not between 1 and the worker count.
    public static func replicated(expertCounts: [Int], workerNames: [String], replicas: Int) throws(PlacementError) -> Placement {
        guard (1...max(1, workerNames.count)).contains(replicas) else {
            throw PlacementError(
                "replicas is \(replicas), but must be between 1 and the number of workers (\(workerNames.count))")
        }
        let even = try even(expertCounts: expertCounts, workerNames: workerNames)
        guard replicas > 1 else { return even }
        let holders = even.holders.map { layer in
            layer.map { owners in (0..<replicas).map { (owners[0] + $0) % workerNames.count }.sorted() }
        }
        return Placement(validatedNames: workerNames, holders: holders)
    }

    /// The same placement with worker slot `slot` named `name` (a replacement worker of another
    /// name took the slot of a lost one).
    /// - Throws: `PlacementError` when another slot already has that name.
    public func renamingWorker(_ slot: Int, to name: String) throws(PlacementError) -> Placement {
        var names = workerNames
        names[slot] = name
        try Self.checkUniqueNames(names)
        return Placement(validatedNames: names, holders: holders)
    }

    /// The same placement with other holder lists (each non-empty, ascending, within the slots);
    /// for the decisions of this module that build them from valid ones.
    func withHolders(_ holders: [[[Int]]]) -> Placement {
        precondition(holders.joined().allSatisfy { !$0.isEmpty }, "every expert needs a holder")
        return Placement(validatedNames: workerNames, holders: holders.map { $0.map { $0.sorted() } })
    }

    /// Reads a placement file: `{"workers": [{"name": "w0", "experts": [[layer, expert], ...]}, ...]}`.
    /// Experts not listed are spread evenly over the workers not marked `"exclusive": true` (an
    /// exclusive worker holds exactly its list); an expert listed under several workers has a replica
    /// on each. An expert left with no worker, an expert listed twice for one worker, an id outside the
    /// model, or two workers with one name is an error naming the entry.
    public static func load(
        from url: URL, layerCount: Int, expertCount: Int
    ) throws -> Placement {
        try load(from: url, expertCounts: Array(repeating: expertCount, count: layerCount))
    }

    /// Reads a placement file for a model whose layer l has `expertCounts[l]` experts (0: dense).
    public static func load(from url: URL, expertCounts: [Int]) throws -> Placement {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw PlacementError("\(url.path): cannot read placement file (\(error.localizedDescription))")
        }
        return try decode(data, source: url.lastPathComponent, expertCounts: expertCounts)
    }

    /// Reads a placement from the JSON text of a placement file; `source` names it in errors.
    public static func load(
        json data: Data, source: String, layerCount: Int, expertCount: Int
    ) throws(PlacementError) -> Placement {
        try decode(data, source: source, expertCounts: Array(repeating: expertCount, count: layerCount))
    }

    /// Placement-file JSON for a model whose layer l has `expertCounts[l]` experts (0: dense).
    public static func load(json data: Data, source: String, expertCounts: [Int]) throws(PlacementError) -> Placement {
        try decode(data, source: source, expertCounts: expertCounts)
    }

    /// Parses placement JSON (the placement file's shape) from untrusted bytes.
    /// - Parameter source: names the input in error messages (a path, or "request body").
    /// - Throws: `PlacementError` naming the first problem.
    public static func decode(
        _ data: Data, source: String, layerCount: Int, expertCount: Int
    ) throws(PlacementError) -> Placement {
        try decode(data, source: source, expertCounts: Array(repeating: expertCount, count: layerCount))
    }

    /// Decodes placement-file JSON for a model whose layer l has `expertCounts[l]` experts (0: dense).
    public static func decode(_ data: Data, source: String, expertCounts: [Int]) throws(PlacementError) -> Placement {
        let file: PlacementFile
        do { file = try JSONDecoder().decode(PlacementFile.self, from: data) } catch {
            throw PlacementError(
                "\(source): not a placement file; expected {\"workers\": [{\"name\": \"w0\", \"experts\": [[layer, expert], ...]}]} (\(error))"
            )
        }
        return try make(file: file, source: source, expertCounts: expertCounts)
    }

    static func make(
        file: PlacementFile, source: String, layerCount: Int, expertCount: Int
    ) throws(PlacementError) -> Placement {
        try make(file: file, source: source, expertCounts: Array(repeating: expertCount, count: layerCount))
    }

    static func make(
        file: PlacementFile, source: String, expertCounts: [Int]
    ) throws(PlacementError) -> Placement {
        let layerCount = expertCounts.count
        let names = file.workers.map(\.name)
        guard !names.isEmpty else { throw PlacementError("\(source): workers is empty; list at least one worker") }
        try checkUniqueNames(names, source: source)
        var holders = expertCounts.map { Array(repeating: [Int](), count: $0) }
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
                let expertCount = expertCounts[layer]
                guard expertCount > 0 else {
                    throw PlacementError("\(field): layer \(layer) is a dense layer; it has no experts to place")
                }
                guard (0..<expertCount).contains(expert) else {
                    throw PlacementError(
                        "\(field): expert \(expert) does not exist; valid experts are 0...\(expertCount - 1)")
                }
                guard holders[layer][expert].last != slot else {
                    throw PlacementError(
                        "\(field): layer \(layer) expert \(expert) is listed twice for \(worker.name)")
                }
                holders[layer][expert].append(slot)
            }
        }
        // Unlisted experts: spread evenly over the workers that are not exclusive, in the same blocks
        // an even placement over those workers would use.
        let sharing = file.workers.indices.filter { file.workers[$0].exclusive != true }
        var missing: [String] = []
        for layer in 0..<layerCount {
            let expertCount = expertCounts[layer]
            let fallback = sharing.isEmpty ? [] : evenOwners(expertCount: expertCount, workerCount: sharing.count)
            for expert in 0..<expertCount where holders[layer][expert].isEmpty {
                if sharing.isEmpty {
                    missing.append("layer \(layer) expert \(expert)")
                } else {
                    holders[layer][expert] = [sharing[fallback[expert]]]
                }
            }
        }
        if !missing.isEmpty {
            let shown = missing.prefix(8).joined(separator: ", ") + (missing.count > 8 ? " and \(missing.count - 8) more" : "")
            throw PlacementError(
                "\(source): \(shown) \(missing.count == 1 ? "has" : "have") no worker; every worker is exclusive, "
                    + "so list \(missing.count == 1 ? "it" : "them") under a worker or add a worker that is not exclusive")
        }
        return Placement(validatedNames: names, holders: holders)
    }
    /// The placement as a file: every worker with every expert it holds, listed explicitly.
    public var file: PlacementFile {
        PlacementFile(
            workers: workerNames.indices.map { slot in
                PlacementFile.Worker(
                    name: workerNames[slot],
                    experts: experts(ofWorker: slot).map { [$0.layer.rawValue, $0.expert.rawValue] })
            })
    }

    /// The placement file's JSON (what `serve --placement` and `POST /v1/placement` read).
    public func jsonData() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(file)) ?? Data()
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
public struct PlacementFile: Codable, Equatable, Sendable {
    /// One worker and the `[layer, expert]` pairs it holds.
    public struct Worker: Codable, Equatable, Sendable {
        public var name: String
        public var experts: [[Int]]
        /// True: the worker holds exactly `experts` and takes none of the unlisted ones.
        public var exclusive: Bool?
        public init(name: String, experts: [[Int]], exclusive: Bool? = nil) {
            self.name = name
            self.experts = experts
            self.exclusive = exclusive
        }
    }
    public var workers: [Worker]
    public init(workers: [Worker]) { self.workers = workers }
}
