// Wire: the Switchyard wire protocol as Swift values.
//
// Vocabulary:
// - message: one multipart ZeroMQ message; `WireMessage` is its Swift value.
// - frame: one part of a message. Frame 0 is the protobuf header (`Protos/switchyard/v1/wire.proto`,
//   encoded with protobuf-c); DISPATCH and COMBINE add one tensor frame.
// - hidden states: the tensor frame, [rowCount, hiddenSize] little-endian f32 or bf16.
// - routing (CSR): for each row of a dispatch, the experts it was routed to and their routing
//   weights, as row offsets into flat expert-id and weight arrays.
// - protocol version: major.minor; peers talk only when the majors are equal.
//
// `WireCodec` turns messages into frames and back; decoding checks structure (frame count, sizes,
// limits, CSR shape, finiteness) and throws `WireError` on anything else. Checks against the model
// (layer < layer count, expert held) are the caller's: see `WireMessage.Dispatch.validate`.
// This is the only target that imports CProtobufC; no generated C type appears in its API.

/// A protocol version: peers are compatible when their major versions are equal.
public struct ProtocolVersion: Hashable, Sendable, CustomStringConvertible {
    /// Bumped for any change an older peer cannot ignore.
    public var major: UInt32
    /// Bumped for additions an older peer may ignore (new fields, messages, enum values).
    public var minor: UInt32

    /// Creates a version `major.minor`.
    public init(major: UInt32, minor: UInt32) {
        self.major = major
        self.minor = minor
    }

    /// The version this build speaks: 1.0. Equals the `ProtocolVersion` enum of
    /// `Protos/switchyard/v1/wire.proto` (checked by WireTests against the generated C code).
    public static let current = ProtocolVersion(major: 1, minor: 0)

    /// Whether a peer speaking `other` can talk to a peer speaking `self` (same major).
    public func isCompatible(with other: ProtocolVersion) -> Bool { major == other.major }

    /// `major.minor`, e.g. `1.0`.
    public var description: String { "\(major).\(minor)" }
}

/// Structural limits that `WireCodec.decode` enforces on every message from the network.
public enum WireLimits {
    /// Largest header frame (frame 0), in bytes: 16 MiB.
    public static let maxHeaderBytes = 16 << 20
    /// Largest row count of a dispatch or combine: 2^20 rows.
    public static let maxRowCount = 1 << 20
    /// Largest hidden size of a tensor frame: 65536 elements per row.
    public static let maxHiddenSize = 65536
    /// Most experts one dispatch row may be routed to: 64.
    public static let maxExpertsPerRow = 64
}
