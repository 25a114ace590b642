import Foundation
import Testing
import Tensors

@testable import Coordinator

@Suite("Placement")
struct PlacementTests {
    @Test("an even placement gives every worker a contiguous block of experts in every layer", arguments: [1, 2, 3, 8])
    func evenSplit(workers: Int) throws {
        let names = (0..<workers).map { "w\($0)" }
        let placement = try Placement.even(layerCount: 3, expertCount: 8, workerNames: names)
        var held = Set<LayerExpert>()
        for slot in 0..<workers {
            let experts = placement.experts(ofWorker: slot)
            #expect(experts.count >= 3 * (8 / workers))
            #expect(experts.count <= 3 * (8 / workers + 1))
            for pair in experts { #expect(held.insert(pair).inserted) }
        }
        #expect(held.count == 3 * 8)
    }

    @Test("dense layers hold no experts: an even placement skips them and a placement file naming one is refused")
    func denseLayers() throws {
        let placement = try Placement.even(expertCounts: [4, 0, 4], workerNames: ["a", "b"])
        #expect(placement.expertCounts == [4, 0, 4])
        #expect(Set(placement.experts(ofWorker: 0).map(\.layer.rawValue)) == [0, 2])
        #expect(placement.experts(ofWorker: 0).count + placement.experts(ofWorker: 1).count == 8)
        let file = PlacementFile(workers: [.init(name: "a", experts: [[1, 0]]), .init(name: "b", experts: [])])
        do {
            _ = try Placement.make(file: file, source: "p.json", expertCounts: [4, 0, 4])
            Issue.record("a dense layer's expert must be refused")
        } catch {
            #expect(error.description.contains("layer 1 is a dense layer"), "\(error.description)")
        }
    }

    @Test("more workers than experts is refused with the valid maximum")
    func tooManyWorkers() {
        #expect(throws: PlacementError.self) {
            try Placement.even(layerCount: 1, expertCount: 4, workerNames: ["a", "b", "c", "d", "e"])
        }
    }

    @Test("a placement file pins listed experts and spreads the rest evenly")
    func fileWithPins() throws {
        let file = PlacementFile(workers: [
            .init(name: "a", experts: [[0, 3], [1, 3]]),
            .init(name: "b", experts: [[0, 0]]),
        ])
        let placement = try Placement.make(file: file, source: "p.json", layerCount: 2, expertCount: 4)
        #expect(placement.workers(holding: ExpertID(3), in: LayerIndex(0)) == [0])
        #expect(placement.workers(holding: ExpertID(0), in: LayerIndex(0)) == [1])
        #expect(placement.workers(holding: ExpertID(1), in: LayerIndex(1)) == [0])
        #expect(placement.workers(holding: ExpertID(2), in: LayerIndex(1)) == [1])
    }

    @Test("an expert listed under several workers has a replica on each, and the file round-trips")
    func replicasInFile() throws {
        let file = PlacementFile(workers: [
            .init(name: "a", experts: [[0, 0], [0, 1]]),
            .init(name: "b", experts: [[0, 0], [0, 2], [0, 3]]),
        ])
        let placement = try Placement.make(file: file, source: "p.json", layerCount: 1, expertCount: 4)
        #expect(placement.workers(holding: ExpertID(0), in: LayerIndex(0)) == [0, 1])
        #expect(placement.experts(ofWorker: 0).map(\.expert.rawValue) == [0, 1])
        #expect(placement.experts(ofWorker: 1).map(\.expert.rawValue) == [0, 2, 3])
        let reread = try Placement.decode(placement.jsonData(), source: "again", layerCount: 1, expertCount: 4)
        #expect(reread == placement)
    }

    @Test("reordering a placement by worker name keeps every expert on the same named worker")
    func reorderByName() throws {
        let file = PlacementFile(workers: [
            .init(name: "a", experts: [[0, 0], [0, 1]]), .init(name: "b", experts: [[0, 0], [0, 2], [0, 3]]),
        ])
        let placement = try Placement.make(file: file, source: "p.json", layerCount: 1, expertCount: 4)
        let swapped = try placement.reordered(as: ["b", "a"])
        #expect(swapped.workerNames == ["b", "a"])
        #expect(swapped.experts(ofWorker: 0) == placement.experts(ofWorker: 1))
        #expect(swapped.experts(ofWorker: 1) == placement.experts(ofWorker: 0))
        #expect(throws: PlacementError.self) { try placement.reordered(as: ["a", "c"]) }
    }

    @Test("an exclusive worker holds exactly its list; the unlisted experts go to the other workers")
    func exclusiveWorker() throws {
        let file = PlacementFile(workers: [
            .init(name: "a", experts: [[0, 3]], exclusive: true),
            .init(name: "b", experts: []),
            .init(name: "c", experts: []),
        ])
        let placement = try Placement.make(file: file, source: "p.json", layerCount: 2, expertCount: 4)
        #expect(placement.experts(ofWorker: 0) == [LayerExpert(layer: LayerIndex(0), expert: ExpertID(3))])
        #expect(placement.experts(ofWorker: 1).count + placement.experts(ofWorker: 2).count == 7)
        #expect(placement.experts(ofWorker: 1).count >= 3 && placement.experts(ofWorker: 2).count >= 3)
    }

    @Test("when every worker is exclusive, an expert nobody lists stops the coordinator, named")
    func expertWithoutWorker() {
        let file = PlacementFile(workers: [
            .init(name: "a", experts: [[0, 0], [0, 1], [1, 0], [1, 1]], exclusive: true),
            .init(name: "b", experts: [[0, 2], [0, 3], [1, 3]], exclusive: true),
        ])
        #expect(throws: PlacementError("p.json: layer 1 expert 2 has no worker; every worker is exclusive, so list it under a worker or add a worker that is not exclusive")) {
            try Placement.make(file: file, source: "p.json", layerCount: 2, expertCount: 4)
        }
    }

    @Test("a placement given as JSON text reads like a placement file")
    func inlineJSON() throws {
        let json = #"{"workers":[{"name":"a","experts":[[0,0]],"exclusive":true},{"name":"b","experts":[]}]}"#
        let placement = try Placement.load(json: Data(json.utf8), source: "--placement-json", layerCount: 1, expertCount: 4)
        #expect(placement.workerNames == ["a", "b"])
        #expect(placement.experts(ofWorker: 1).map(\.expert.rawValue) == [1, 2, 3])
    }

    @Test(
        "a bad placement file names the entry and the valid values",
        arguments: [
            (PlacementFile(workers: [.init(name: "a", experts: [[0, 9]])]), "expert 9 does not exist; valid experts are 0...3"),
            (PlacementFile(workers: [.init(name: "a", experts: [[5, 0]])]), "layer 5 does not exist; valid layers are 0...1"),
            (PlacementFile(workers: [.init(name: "a", experts: []), .init(name: "a", experts: [])]), "two workers are named \"a\""),
                        (PlacementFile(workers: [.init(name: "a", experts: [[0, 1], [0, 1]])]), "layer 0 expert 1 is listed twice for a"),
            (PlacementFile(workers: [.init(name: "a", experts: [[0]])]), "must be a [layer, expert] pair"),
        ])
    func badFile(file: PlacementFile, message: String) {
        do {
            _ = try Placement.make(file: file, source: "p.json", layerCount: 2, expertCount: 4)
            Issue.record("expected an error containing \(message)")
        } catch {
            #expect(error.description.contains(message), "\(error.description)")
        }
    }
}
