// Identifiers that travel on the wire. Layer and expert ids come from Tensors.

/// A worker's id, assigned by the coordinator in WELCOME; unique while the coordinator runs.
public struct WorkerID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }
    public static func < (lhs: WorkerID, rhs: WorkerID) -> Bool { lhs.rawValue < rhs.rawValue }
    /// `w3`.
    public var description: String { "w\(rawValue)" }
}

/// The coordinator's id of one request (a sequence being generated); a dispatch names it.
public struct RequestID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (lhs: RequestID, rhs: RequestID) -> Bool { lhs.rawValue < rhs.rawValue }
    /// `request 12`.
    public var description: String { "request \(rawValue)" }
}

/// A client's own id for a generation job, echoed in its GENERATE_RESULT.
public struct ClientRequestID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (lhs: ClientRequestID, rhs: ClientRequestID) -> Bool { lhs.rawValue < rhs.rawValue }
    /// `client request 7`.
    public var description: String { "client request \(rawValue)" }
}

/// The index of a scheduler step (one forward pass over the running batch), increasing from 0.
public struct StepIndex: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (lhs: StepIndex, rhs: StepIndex) -> Bool { lhs.rawValue < rhs.rawValue }
    /// `step 5`.
    public var description: String { "step \(rawValue)" }
}
