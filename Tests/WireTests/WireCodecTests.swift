import Tensors
import Testing
import Wire

/// One message of every kind (and the variants of optional fields), for round-trip tests.
let sampleMessages: [WireMessage] = [
    .hello(.init(workerName: "worker-a", modelFingerprint: "9f86d081884c7d65", threads: 8, pid: 4242)),
    .hello(.init(workerName: "", modelFingerprint: "", threads: 0, pid: 0)),
    .hello(.init(workerName: String(repeating: "w", count: 255), modelFingerprint: "ab", threads: 1, pid: 1)),
    .hello(.init(
        workerName: "worker-b", modelFingerprint: "ab", threads: 2, pid: 7,
        expertTensorDigests: [TensorDigest(bytes: Array(0..<32))!, TensorDigest(bytes: [UInt8](repeating: 0xEE, count: 32))!],
        kernelPath: "amx")),
    .welcome(.init(workerID: WorkerID(3), coordinatorName: "coordinator ünïcode ✓")),
    .assign(.init(experts: [])),
    .assign(.init(experts: [LayerExpert(layer: LayerIndex(2), expert: ExpertID(1))], arithmetic: .fast, quantization: .q8)),
    .assign(
        .init(experts: [
            LayerExpert(layer: LayerIndex(0), expert: ExpertID(5)),
            LayerExpert(layer: LayerIndex(31), expert: ExpertID(127)),
        ])),
    .ready(.init(loadedExpertCount: 64, loadSeconds: 12.5)),
    .dispatch(sampleDispatch(dtype: .f32)),
    .dispatch(sampleDispatch(dtype: .bf16)),
    .dispatch(
        WireMessage.Dispatch(
            requestID: RequestID(0), step: StepIndex(0), layer: LayerIndex(0), rowExpertOffsets: [0],
            expertIDs: [], weights: [],
            hiddenStates: HiddenStates(rowCount: 0, hiddenSize: 16, values: [], dtype: .f32))),
    .combine(
        .init(
            requestID: RequestID(UInt64.max), step: StepIndex(9), layer: LayerIndex(4),
            outputs: HiddenStates(rowCount: 3, hiddenSize: 2, values: [1, -2, 3.5, 0, 1e-3, -1e6], dtype: .f32),
            computeMicroseconds: 1234)),
    .combine(
        .init(
            requestID: RequestID(1), step: StepIndex(2), layer: LayerIndex(3),
            outputs: HiddenStates(rowCount: 1, hiddenSize: 2, values: [0.5, -0.25], dtype: .bf16),
            computeMicroseconds: 0)),
    .heartbeat(.init(sentUnixMillis: 1_763_900_000_000)),
    .error(.init(code: .badFrame, message: "DISPATCH: tensor frame is 3 bytes")),
    .error(.init(code: .unknownExpert, message: "expert 9", requestID: RequestID(0), layer: LayerIndex(0))),
    .error(.init(code: .internal, message: "", requestID: RequestID(77), layer: nil)),
    .bye(.init(reason: "shutdown")),
    .generateRequest(.init(clientRequestID: ClientRequestID(1), prompt: .text("Hello, world"), maxTokens: 32)),
    .generateRequest(
        .init(
            clientRequestID: ClientRequestID(2), prompt: .tokenIDs([1, 15043, 29892]), maxTokens: 8, temperature: 0.7,
            topP: 0.9, topK: 40, seed: 0, ignoreEOS: true, logprobs: 5)),
    .generateRequest(.init(clientRequestID: ClientRequestID(3), prompt: .tokenIDs([]), maxTokens: 0)),
    .generateResult(.init(clientRequestID: ClientRequestID(2), resultJSON: #"{"text":"hi","tokens":[1,2]}"#)),
]

func sampleDispatch(dtype: WireDType) -> WireMessage.Dispatch {
    WireMessage.Dispatch(
        requestID: RequestID(42), step: StepIndex(17), layer: LayerIndex(5), rowExpertOffsets: [0, 2, 3, 3],
        expertIDs: [ExpertID(1), ExpertID(6), ExpertID(2)], weights: [0.625, 0.375, 1],
        hiddenStates: HiddenStates(
            rowCount: 3, hiddenSize: 4, values: (0..<12).map { Float($0) * 0.5 - 2 }, dtype: dtype))
}

/// The error `WireCodec.decode` throws for `frames`, or nil when it decodes.
func decodeError(_ frames: [[UInt8]]) -> WireError? {
    do {
        _ = try WireCodec.decode(frames)
        return nil
    } catch {
        return error
    }
}

@Suite("Wire codec")
struct WireCodecTests {
    @Test("every message decodes to the value it was encoded from", arguments: sampleMessages)
    func roundTrip(message: WireMessage) throws {
        let frames = WireCodec.encode(message)
        #expect(frames.count == message.kind.frameCount)
        #expect(try WireCodec.decode(frames) == message)
    }

    @Test("the tensor frame is the hidden states' bytes, little-endian, after the header")
    func tensorFrameLayout() throws {
        let dispatch = sampleDispatch(dtype: .f32)
        let frames = WireCodec.encode(.dispatch(dispatch))
        #expect(frames[1] == dispatch.hiddenStates.bytes)
        #expect(Array(frames[1][4..<8]) == [0x00, 0x00, 0xC0, 0xBF])  // -1.5 as f32 little-endian
    }

    @Test("a dispatch row's route lists its experts and weights in order")
    func dispatchRoute() {
        let dispatch = sampleDispatch(dtype: .f32)
        #expect(Array(dispatch.route(ofRow: 0).expertIDs) == [ExpertID(1), ExpertID(6)])
        #expect(Array(dispatch.route(ofRow: 0).weights) == [0.625, 0.375])
        #expect(dispatch.route(ofRow: 2).expertIDs.isEmpty)
    }

    @Test("a hand-written protobuf header decodes like protobuf-c's, so the schema is what the docs say")
    func rawDispatchDecodes() throws {
        let message = try WireCodec.decode(RawDispatch().frames)
        guard case .dispatch(let dispatch) = message else {
            Issue.record("decoded \(message.kind), expected DISPATCH")
            return
        }
        #expect(dispatch.requestID == RequestID(7))
        #expect(dispatch.step == StepIndex(3))
        #expect(dispatch.layer == LayerIndex(2))
        #expect(dispatch.rowExpertOffsets == [0, 2, 3])
        #expect(dispatch.expertIDs == [ExpertID(1), ExpertID(3), ExpertID(2)])
        #expect(dispatch.weights == [0.75, 0.25, 1])
        #expect(dispatch.hiddenStates.rowCount == 2 && dispatch.hiddenStates.hiddenSize == 4)
    }

    @Test("a peer with the same major and a newer minor version is accepted")
    func newerMinorAccepted() throws {
        var raw = RawDispatch()
        raw.minor = 7
        #expect(throws: Never.self) { try WireCodec.decode(raw.frames) }
    }

    @Test("the error of a bad message names the problem and the valid value")
    func errorDescription() {
        var raw = RawDispatch()
        raw.tensorByteCount = 1000
        raw.rowCount = 4
        raw.hiddenSize = 64
        raw.offsets = [0, 1, 2, 3, 3]
        #expect(
            decodeError(raw.frames)?.description
                == "DISPATCH: tensor frame is 1000 bytes, but 4 rows × 64 × f32 needs 1024")
    }
}

/// A malformed message and the error decoding it must throw.
struct BadMessage: Sendable, CustomTestStringConvertible {
    let name: String
    let frames: [[UInt8]]
    let expected: WireError
    var testDescription: String { name }
}

private let helloFrames = WireCodec.encode(.hello(.init(workerName: "w", modelFingerprint: "ab", threads: 1, pid: 2)))

private func rawDispatch(_ change: (inout RawDispatch) -> Void) -> [[UInt8]] {
    var raw = RawDispatch()
    change(&raw)
    return raw.frames
}

let badMessages: [BadMessage] = [
    BadMessage(name: "no frames", frames: [], expected: .noFrames),
    BadMessage(
        name: "truncated header", frames: [Array(helloFrames[0].dropLast())],
        expected: .malformedHeader(byteCount: helloFrames[0].count - 1)),
    BadMessage(
        name: "garbage header", frames: [[UInt8](repeating: 0xFF, count: 12)], expected: .malformedHeader(byteCount: 12)),
    BadMessage(
        name: "header over 16 MiB", frames: [[UInt8](repeating: 0, count: WireLimits.maxHeaderBytes + 1)],
        expected: .headerTooLarge(byteCount: WireLimits.maxHeaderBytes + 1, limit: WireLimits.maxHeaderBytes)),
    BadMessage(
        name: "major version 2", frames: rawDispatch { $0.major = 2 },
        expected: .protocolMismatch(local: .current, remote: ProtocolVersion(major: 2, minor: 0))),
    BadMessage(
        name: "major version 0 (empty header)", frames: [[]],
        expected: .protocolMismatch(local: .current, remote: ProtocolVersion(major: 0, minor: 0))),
    BadMessage(
        name: "no body", frames: [rawHeader(major: 1, minor: 0)],
        expected: .missingBody(remote: ProtocolVersion(major: 1, minor: 0))),
    BadMessage(
        name: "unknown body of a newer minor", frames: [rawHeader(major: 1, minor: 3, bodyField: 99, body: [8, 1])],
        expected: .missingBody(remote: ProtocolVersion(major: 1, minor: 3))),
    BadMessage(
        name: "HELLO with a tensor frame", frames: helloFrames + [[1, 2, 3]],
        expected: .frameCount(.hello, count: 2, expected: 1)),
    BadMessage(
        name: "DISPATCH without its tensor frame", frames: [RawDispatch().frames[0]],
        expected: .frameCount(.dispatch, count: 1, expected: 2)),
    BadMessage(
        name: "DISPATCH with two tensor frames", frames: RawDispatch().frames + [[]],
        expected: .frameCount(.dispatch, count: 3, expected: 2)),
    BadMessage(
        name: "tensor frame too short", frames: rawDispatch { $0.tensorByteCount = 31 },
        expected: .tensorFrameSize(.dispatch, byteCount: 31, rowCount: 2, hiddenSize: 4, dtype: .f32)),
    BadMessage(
        name: "bf16 header with an f32-sized frame", frames: rawDispatch { $0.dtype = 1; $0.tensorByteCount = 32 },
        expected: .tensorFrameSize(.dispatch, byteCount: 32, rowCount: 2, hiddenSize: 4, dtype: .bf16)),
    BadMessage(
        name: "unknown dtype", frames: rawDispatch { $0.dtype = 5; $0.tensorByteCount = 32 },
        expected: .invalidField(.dispatch, field: "dtype", reason: "is 5, but must be 0 (f32) or 1 (bf16)")),
    BadMessage(
        name: "row count over the limit", frames: rawDispatch { $0.rowCount = 1 << 21; $0.tensorByteCount = 0 },
        expected: .invalidField(.dispatch, field: "row_count", reason: "is 2097152, but must be at most 1048576")),
    BadMessage(
        name: "hidden size over the limit", frames: rawDispatch { $0.hiddenSize = 65537; $0.tensorByteCount = 0 },
        expected: .invalidField(.dispatch, field: "hidden_size", reason: "is 65537, but must be between 1 and 65536")),
    BadMessage(
        name: "hidden size 0", frames: rawDispatch { $0.hiddenSize = 0 },
        expected: .invalidField(.dispatch, field: "hidden_size", reason: "is 0, but must be between 1 and 65536")),
    BadMessage(
        name: "CSR with too few offsets", frames: rawDispatch { $0.offsets = [0, 3] },
        expected: .invalidRouting(.dispatch, .offsetCount(count: 2, rowCount: 2))),
    BadMessage(
        name: "CSR not starting at 0", frames: rawDispatch { $0.offsets = [1, 2, 3] },
        expected: .invalidRouting(.dispatch, .firstOffset(1))),
    BadMessage(
        name: "CSR decreasing", frames: rawDispatch { $0.offsets = [0, 3, 2] },
        expected: .invalidRouting(.dispatch, .decreasingOffset(row: 1, offset: 3, next: 2))),
    BadMessage(
        name: "CSR end past the expert ids", frames: rawDispatch { $0.offsets = [0, 2, 4] },
        expected: .invalidRouting(.dispatch, .lengthMismatch(lastOffset: 4, expertIDCount: 3, weightCount: 3))),
    BadMessage(
        name: "fewer weights than expert ids", frames: rawDispatch { $0.weights = [0.5, 0.5] },
        expected: .invalidRouting(.dispatch, .lengthMismatch(lastOffset: 3, expertIDCount: 3, weightCount: 2))),
    BadMessage(
        name: "65 experts on one row",
        frames: rawDispatch {
            $0.offsets = [0, 65, 66]
            $0.expertIDs = Array(0..<66)
            $0.weights = Array(repeating: 0.1, count: 66)
        },
        expected: .invalidRouting(.dispatch, .tooManyExperts(row: 0, count: 65, limit: 64))),
    BadMessage(
        name: "NaN weight", frames: rawDispatch { $0.weights = [0.5, .nan, 1] },
        expected: .nonFiniteWeight(.dispatch, index: 1)),
    BadMessage(
        name: "infinite weight", frames: rawDispatch { $0.weights = [0.5, 0.5, -.infinity] },
        expected: .nonFiniteWeight(.dispatch, index: 2)),
    BadMessage(
        name: "unknown error code", frames: [rawHeader(major: 1, minor: 0, bodyField: 17, body: [8, 42])],
        expected: .invalidField(.error, field: "code", reason: "is 42, but must be between 1 (BAD_FRAME) and 7 (BAD_REQUEST)")),
    BadMessage(
        name: "prompt text and token ids together",
        frames: [rawHeader(major: 1, minor: 0, bodyField: 19, body: [0x12, 1, 0x41, 0x1A, 1, 5, 0x20, 1])],
        expected: .invalidField(
            .generateRequest, field: "prompt_token_ids",
            reason: "has 1 entries, but must be empty when has_prompt_text is set")),
    BadMessage(
        name: "HELLO with a 33-byte kernel path",
        frames: [rawHeader(major: 1, minor: 0, bodyField: 10, body: [0x32, 33] + [UInt8](repeating: 0x61, count: 33))],
        expected: .invalidField(.hello, field: "kernel_path", reason: "has 33 bytes, but a kernel path has at most 32")),
    BadMessage(
        name: "HELLO with a 256-byte worker name",
        frames: [rawHeader(major: 1, minor: 0, bodyField: 10, body: [0x0A, 0x80, 0x02] + [UInt8](repeating: 0x77, count: 256))],
        expected: .invalidField(.hello, field: "worker_name", reason: "has 256 bytes, but a worker name has at most 255")),
    BadMessage(
        name: "negative READY load time",
        frames: [rawHeader(major: 1, minor: 0, bodyField: 13, body: [0x11] + withUnsafeBytes(of: (-1.0).bitPattern.littleEndian) { Array($0) })],
        expected: .invalidField(.ready, field: "load_seconds", reason: "is -1.0, but must be finite and ≥ 0")),
    BadMessage(
        name: "NaN temperature",
        frames: [rawHeader(major: 1, minor: 0, bodyField: 19, body: [0x35] + withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { Array($0) })],
        expected: .invalidField(.generateRequest, field: "temperature", reason: "is nan, but must be finite and ≥ 0")),
    BadMessage(
        name: "top_p above 1",
        frames: [rawHeader(major: 1, minor: 0, bodyField: 19, body: [0x3D] + withUnsafeBytes(of: Float(1.5).bitPattern.littleEndian) { Array($0) })],
        expected: .invalidField(.generateRequest, field: "top_p", reason: "is 1.5, but must be between 0 and 1")),
    BadMessage(
        name: "COMBINE with a tensor frame of the wrong size",
        frames: [
            WireCodec.encode(
                .combine(
                    .init(
                        requestID: RequestID(1), step: StepIndex(1), layer: LayerIndex(1),
                        outputs: HiddenStates(rowCount: 2, hiddenSize: 3, values: Array(repeating: 0, count: 6), dtype: .bf16),
                        computeMicroseconds: 5)))[0],
            [UInt8](repeating: 0, count: 24),
        ],
        expected: .tensorFrameSize(.combine, byteCount: 24, rowCount: 2, hiddenSize: 3, dtype: .bf16)),
]

@Suite("Wire codec rejects malformed messages")
struct WireCodecRejectionTests {
    @Test("a malformed message throws the error that names its problem", arguments: badMessages)
    func rejects(bad: BadMessage) {
        #expect(decodeError(bad.frames) == bad.expected)
    }

    @Test("a bad frame's error becomes an ERROR reply with the matching code")
    func errorReportCodes() {
        let mismatch = WireError.protocolMismatch(local: .current, remote: ProtocolVersion(major: 2, minor: 1))
        #expect(mismatch.errorReport().code == .versionMismatch)
        #expect(mismatch.errorReport().message.contains("2.1"))
        #expect(WireError.noFrames.errorReport(requestID: RequestID(3)).code == .badFrame)
        #expect(WireError.noFrames.errorReport(requestID: RequestID(3)).requestID == RequestID(3))
    }

    @Test("random corruption of valid messages never traps: each decodes or throws")
    func corruptionNeverTraps() {
        var generator = SplitMix64(seed: 0x5EED)
        let originals = sampleMessages.map { WireCodec.encode($0) }
        for round in 0..<3000 {
            var frames = originals[round % originals.count]
            var header = frames[0]
            switch generator.next() % 3 {
            case 0 where !header.isEmpty:
                header.removeLast(Int(generator.next() % UInt64(header.count)) + 1)
            case 1 where !header.isEmpty:
                for _ in 0..<(1 + generator.next() % 4) {
                    header[Int(generator.next() % UInt64(header.count))] = UInt8(truncatingIfNeeded: generator.next())
                }
            default:
                header += (0..<(generator.next() % 16)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            }
            frames[0] = header
            _ = decodeError(frames)
        }
    }
}

@Suite("Dispatch validation against a model")
struct DispatchValidationTests {
    @Test("a dispatch within the model's layers, experts and hidden size is valid")
    func valid() throws {
        try sampleDispatch(dtype: .f32).validate(expertCounts: Array(repeating: 7, count: 6), hiddenSize: 4)
    }

    @Test("a layer at or past the layer count is rejected")
    func layerOutOfRange() {
        #expect(throws: WireError.layerOutOfRange(.dispatch, layer: LayerIndex(5), layerCount: 5)) {
            try sampleDispatch(dtype: .f32).validate(expertCounts: Array(repeating: 8, count: 5), hiddenSize: 4)
        }
    }

    @Test("an expert id at or past the expert count is rejected, naming the row")
    func expertOutOfRange() {
        #expect(throws: WireError.expertOutOfRange(.dispatch, row: 0, expert: ExpertID(6), expertCount: 6)) {
            try sampleDispatch(dtype: .f32).validate(expertCounts: Array(repeating: 6, count: 8), hiddenSize: 4)
        }
    }

    @Test("a dispatch to a dense layer (no experts) is rejected, naming the layer")
    func denseLayer() {
        var expertCounts = Array(repeating: 8, count: 8)
        expertCounts[5] = 0
        #expect(throws: WireError.denseLayer(.dispatch, layer: LayerIndex(5))) {
            try sampleDispatch(dtype: .f32).validate(expertCounts: expertCounts, hiddenSize: 4)
        }
        #expect(WireError.denseLayer(.dispatch, layer: LayerIndex(5)).errorReport().code == .badFrame)
    }

    @Test("a hidden size other than the model's is rejected")
    func hiddenSizeMismatch() {
        #expect(throws: WireError.hiddenSizeMismatch(.dispatch, hiddenSize: 4, expected: 8)) {
            try sampleDispatch(dtype: .f32).validate(expertCounts: Array(repeating: 8, count: 8), hiddenSize: 8)
        }
    }
}

