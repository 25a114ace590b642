// Identifiers shared by every tier: a layer index and a logical expert id are distinct types,
// never bare Ints passed around.

/// The index of a decoder layer, 0-based, in model order.
public struct LayerIndex: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public init(_ rawValue: Int) { self.rawValue = rawValue }
    public static func < (lhs: LayerIndex, rhs: LayerIndex) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "layer \(rawValue)" }
}

/// A logical expert of one MoE layer, 0-based (`num_local_experts` of them per layer).
public struct ExpertID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public init(_ rawValue: Int) { self.rawValue = rawValue }
    public static func < (lhs: ExpertID, rhs: ExpertID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "expert \(rawValue)" }
}

/// One expert of one layer: the unit that placement assigns to workers.
public struct LayerExpert: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let layer: LayerIndex
    public let expert: ExpertID
    public init(layer: LayerIndex, expert: ExpertID) {
        self.layer = layer
        self.expert = expert
    }
    public static func < (lhs: LayerExpert, rhs: LayerExpert) -> Bool {
        (lhs.layer, lhs.expert) < (rhs.layer, rhs.expert)
    }
    public var description: String { "layer \(layer.rawValue) expert \(expert.rawValue)" }
}
