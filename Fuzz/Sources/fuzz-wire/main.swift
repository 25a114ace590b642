// fuzz-wire: multipart messages from the network into `WireCodec.decode`, then the checks a worker
// (DISPATCH against its model) or a coordinator (COMBINE, GENERATE_REQUEST) runs next.
//
// Input layout, so that the fuzzer mutates every frame and not only the header:
//   byte 0          frame count: its low 2 bits, 0...3 (0 exercises "no frames");
//   then, for each frame but the last, a 2-byte little-endian length (cut short by the input's end);
//   the last frame is the rest of the input.
// `FrameSplit.join` is the inverse; the seed writer (`SWITCHYARD_FUZZ_WRITE_SEEDS=<dir>`) uses it to
// store real encoder output as the seed corpus.
//
// Properties checked for every input (any failure aborts, which libFuzzer reports as a crash):
// - decode either returns a message or throws a `WireError` whose description and ERROR reply encode;
// - a decoded message round-trips: decode(encode(m)) == m, and encode is stable on the result;
// - a decoded DISPATCH either fits the fuzz model (then every row's route, the hidden states as f32 and
//   the per-element dtype conversions are consistent) or `validate` names why not;
// - a decoded COMBINE's outputs convert to f32 alike through both decoders;
// - a decoded GENERATE_REQUEST converts to the engine's request exactly as the coordinator does, and
//   the engine's sampling check accepts it or refuses it with a typed error.
import Foundation
import Tensors
import Wire

@testable import Coordinator

/// The model the fuzzed dispatches are checked against: 4 layers, layer 2 dense, 8 experts, hidden 16.
let modelExpertCounts = [8, 8, 0, 8]
let modelHiddenSize = 16

/// Reports a broken property and aborts, so libFuzzer saves the input as a crash.
func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        FileHandle.standardError.write(Data("fuzz-wire: property broken: \(message())\n".utf8))
        abort()
    }
}

/// The input layout described at the top of this file.
enum FrameSplit {
    static func split(_ bytes: UnsafeRawBufferPointer) -> [[UInt8]] {
        guard let first = bytes.first else { return [] }
        let frameCount = Int(first & 0x03)
        var rest = bytes[1...]
        var frames: [[UInt8]] = []
        for index in 0..<frameCount {
            if index == frameCount - 1 {
                frames.append(Array(rest))
                break
            }
            let low = rest.popFirst() ?? 0
            let high = rest.popFirst() ?? 0
            let length = min(Int(low) | Int(high) << 8, rest.count)
            frames.append(Array(rest.prefix(length)))
            rest = rest.dropFirst(length)
        }
        return frames
    }

    /// The input that `split` turns into `frames` (each frame but the last at most 65535 bytes).
    static func join(_ frames: [[UInt8]]) -> [UInt8] {
        precondition((0...3).contains(frames.count), "FrameSplit.join: \(frames.count) frames, at most 3 fit")
        var bytes = [UInt8(frames.count)]
        for (index, frame) in frames.enumerated() {
            if index < frames.count - 1 {
                precondition(frame.count <= 0xFFFF, "FrameSplit.join: frame \(index) is \(frame.count) bytes")
                bytes += [UInt8(frame.count & 0xFF), UInt8(frame.count >> 8)]
            }
            bytes += frame
        }
        return bytes
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    let frames = FrameSplit.split(UnsafeRawBufferPointer(start: start, count: count))
    let message: WireMessage
    do {
        message = try WireCodec.decode(frames)
    } catch {
        checkRefusal(error)
        return 0
    }
    checkRoundTrip(message)
    switch message {
    case .dispatch(let dispatch): checkDispatch(dispatch)
    case .combine(let combine): checkHiddenStates(combine.outputs)
    case .generateRequest(let request): checkGenerateRequest(request)
    default: break
    }
    return 0
}

/// A refusal describes itself in one line, and its ERROR reply encodes and decodes unchanged.
func checkRefusal(_ error: WireError) {
    let description = error.description
    require(!description.isEmpty && !description.contains("\n"), "WireError \(error) is not one line")
    let reply = WireMessage.error(error.errorReport())
    require((try? WireCodec.decode(WireCodec.encode(reply))) == reply, "the ERROR reply to \(error) does not round-trip")
}

/// decode(encode(m)) == m, and encoding the result gives the same frames.
func checkRoundTrip(_ message: WireMessage) {
    let frames = WireCodec.encode(message)
    let again: WireMessage
    do {
        again = try WireCodec.decode(frames)
    } catch {
        require(false, "\(message.kind) decoded, but its own encoding does not: \(error)")
        return
    }
    require(again == message, "\(message.kind) changed in a round trip: \(message) became \(again)")
    require(WireCodec.encode(again) == frames, "\(message.kind) encodes differently after a round trip")
}

/// What a worker does with a DISPATCH: validate it against its model, then read each row's route
/// and the hidden states.
func checkDispatch(_ dispatch: WireMessage.Dispatch) {
    checkHiddenStates(dispatch.hiddenStates)
    do {
        try dispatch.validate(expertCounts: modelExpertCounts, hiddenSize: modelHiddenSize)
    } catch {
        require(!error.description.isEmpty, "a dispatch refusal has no description")
        _ = WireCodec.encode(.error(error.errorReport(requestID: dispatch.requestID, layer: dispatch.layer)))
        return
    }
    let expertCount = modelExpertCounts[dispatch.layer.rawValue]
    require(expertCount > 0, "validate accepted the dense \(dispatch.layer)")
    require(dispatch.hiddenStates.hiddenSize == modelHiddenSize, "validate accepted hidden size \(dispatch.hiddenStates.hiddenSize)")
    var routed = 0
    for row in 0..<dispatch.rowCount {
        let route = dispatch.route(ofRow: row)
        require(route.expertIDs.count == route.weights.count, "row \(row) has unequal experts and weights")
        require(route.expertIDs.count <= WireLimits.maxExpertsPerRow, "row \(row) has \(route.expertIDs.count) experts")
        for (expert, weight) in zip(route.expertIDs, route.weights) {
            require((0..<expertCount).contains(expert.rawValue), "validate accepted \(expert)")
            require(weight.isFinite, "decode accepted weight \(weight)")
        }
        routed += route.expertIDs.count
    }
    require(routed == dispatch.expertIDs.count, "the rows route \(routed) of \(dispatch.expertIDs.count) entries")
}

/// Both f32 decoders agree, and the tensor frame survives f32 → bytes (f32) and bf16 bits → f32 → bits.
func checkHiddenStates(_ states: HiddenStates) {
    let values = states.floats()
    require(values.count == states.rowCount * states.hiddenSize, "floats() gave \(values.count) values")
    var copied = [Float](repeating: 0, count: values.count)
    copied.withUnsafeMutableBufferPointer { states.copyFloats(into: $0) }
    require(copied.map(\.bitPattern) == values.map(\.bitPattern), "copyFloats and floats disagree")
    switch states.dtype {
    case .f32:
        require(TensorPayload.bytes(from: values, as: .f32) == states.bytes, "f32 frame does not re-encode to itself")
    case .bf16:
        // Widening is exact, so narrowing gives the same bits back (NaNs come back quiet).
        for index in values.indices {
            let bits = UInt16(states.bytes[2 * index]) | UInt16(states.bytes[2 * index + 1]) << 8
            let expected = values[index].isNaN ? bits | 0x0040 : bits
            require(TensorPayload.bf16Bits(values[index]) == expected, "bf16 element \(index) (\(bits)) does not round-trip")
        }
    }
}

/// What the coordinator does with a GENERATE_REQUEST: convert it to the engine's request, whose
/// sampling check then accepts or refuses it by name.
func checkGenerateRequest(_ request: WireMessage.GenerateRequest) {
    let converted = ClusterCoordinator.generationRequest(request)
    require(converted.maxTokens == request.maxTokens && converted.logprobs == request.logprobs, "counts changed")
    require(converted.ignoreEOS == request.ignoreEOS, "ignore_eos changed")
    switch (request.prompt, converted.prompt) {
    case (.text(let sent), .text(let received)):
        require(sent == received, "the prompt text changed")
    case (.tokenIDs(let sent), .tokenIDs(let received)):
        require(sent == received.map { UInt32(bitPattern: $0) }, "the prompt token ids changed")
    default:
        require(false, "the prompt changed kind")
    }
    let sampling = converted.sampling
    require(
        sampling.temperature == request.temperature && sampling.topP == request.topP && sampling.topK == request.topK
            && sampling.seed == request.seed, "the sampling parameters changed")
    do {
        try sampling.validate()
    } catch {
        guard case .invalidRequest(let field, _) = error else {
            require(false, "sampling refused with \(error), not a named invalid field")
            return
        }
        require(["temperature", "top_p", "top_k"].contains(field), "sampling refused field \(field)")
    }
}

/// `SWITCHYARD_FUZZ_WRITE_SEEDS=<dir>`: writes the seed corpus (real encoder output, in this
/// target's input layout) to `<dir>` and exits.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    if let directory = ProcessInfo.processInfo.environment["SWITCHYARD_FUZZ_WRITE_SEEDS"] {
        writeSeeds(to: URL(fileURLWithPath: directory))
        exit(0)
    }
    return 0
}
