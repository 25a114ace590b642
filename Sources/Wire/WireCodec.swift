import CProtobufC

/// Converts `WireMessage`s to multipart frames and back.
///
/// Frame 0 is the protobuf `switchyard.v1.Header` (with `ProtocolVersion.current`); DISPATCH and
/// COMBINE append their tensor frame. Stateless and thread-safe.
public enum WireCodec {
    /// Encodes `message` as frames: `[header]`, or `[header, tensor]` for DISPATCH and COMBINE.
    /// The tensor frame is the message's `HiddenStates.bytes` (shared, not copied).
    public static func encode(_ message: WireMessage) -> [[UInt8]] {
        let arena = CArena()
        var header = Switchyard__V1__Header()
        switchyard__v1__header__init(&header)
        header.protocol_major = ProtocolVersion.current.major
        header.protocol_minor = ProtocolVersion.current.minor
        var tensor: [UInt8]?
        switch message {
        case .hello(let hello):
            header.body_case = SWITCHYARD__V1__HEADER__BODY_HELLO
            header.hello = hello.cMessage(in: arena)
        case .welcome(let welcome):
            header.body_case = SWITCHYARD__V1__HEADER__BODY_WELCOME
            header.welcome = welcome.cMessage(in: arena)
        case .assign(let assign):
            header.body_case = SWITCHYARD__V1__HEADER__BODY_ASSIGN
            header.assign = assign.cMessage(in: arena)
        case .ready(let ready):
            header.body_case = SWITCHYARD__V1__HEADER__BODY_READY
            header.ready = ready.cMessage(in: arena)
        case .dispatch(let dispatch):
            header.body_case = SWITCHYARD__V1__HEADER__BODY_DISPATCH
            header.dispatch = dispatch.cMessage(in: arena)
            tensor = dispatch.hiddenStates.bytes
        case .combine(let combine):
            header.body_case = SWITCHYARD__V1__HEADER__BODY_COMBINE
            header.combine = combine.cMessage(in: arena)
            tensor = combine.outputs.bytes
        case .heartbeat(let heartbeat):
            header.body_case = SWITCHYARD__V1__HEADER__BODY_HEARTBEAT
            header.heartbeat = heartbeat.cMessage(in: arena)
        case .error(let report):
            header.body_case = SWITCHYARD__V1__HEADER__BODY_ERROR
            header.error = report.cMessage(in: arena)
        case .bye(let bye):
            header.body_case = SWITCHYARD__V1__HEADER__BODY_BYE
            header.bye = bye.cMessage(in: arena)
        case .generateRequest(let request):
            header.body_case = SWITCHYARD__V1__HEADER__BODY_GENERATE_REQUEST
            header.generate_request = request.cMessage(in: arena)
        case .generateResult(let result):
            header.body_case = SWITCHYARD__V1__HEADER__BODY_GENERATE_RESULT
            header.generate_result = result.cMessage(in: arena)
        }
        let size = switchyard__v1__header__get_packed_size(&header)
        let headerFrame = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            count = switchyard__v1__header__pack(&header, buffer.baseAddress)
        }
        // Keep the arena (which owns every string and array the header points to) alive past pack.
        withExtendedLifetime(arena) {}
        if let tensor { return [headerFrame, tensor] }
        return [headerFrame]
    }

    /// Decodes one message from its frames, checking its structure.
    ///
    /// Checks, in order: at least one frame; header ≤ `WireLimits.maxHeaderBytes`; the header
    /// parses; same protocol major; a known body; the frame count for the kind; then per kind:
    /// shapes within `WireLimits`, known enum values, tensor frame size = rows × hidden × dtype
    /// size, CSR routing well-formed, finite weights and sampling parameters. Checks against a
    /// model are the caller's (`WireMessage.Dispatch.validate`).
    /// - Throws: `WireError` naming the first problem found. Never traps on any input.
    public static func decode(_ frames: [[UInt8]]) throws(WireError) -> WireMessage {
        guard let headerFrame = frames.first else { throw .noFrames }
        guard headerFrame.count <= WireLimits.maxHeaderBytes else {
            throw .headerTooLarge(byteCount: headerFrame.count, limit: WireLimits.maxHeaderBytes)
        }
        let unpacked: UnsafeMutablePointer<Switchyard__V1__Header>? = headerFrame.withUnsafeBufferPointer { buffer in
            // An empty array may have no base address; protobuf-c reads nothing when the length is 0.
            var empty: UInt8 = 0
            guard let base = buffer.baseAddress else { return switchyard__v1__header__unpack(nil, 0, &empty) }
            return switchyard__v1__header__unpack(nil, buffer.count, base)
        }
        guard let unpacked else { throw .malformedHeader(byteCount: headerFrame.count) }
        defer { switchyard__v1__header__free_unpacked(unpacked, nil) }
        let header = unpacked.pointee

        let remote = ProtocolVersion(major: header.protocol_major, minor: header.protocol_minor)
        guard remote.isCompatible(with: .current) else {
            throw .protocolMismatch(local: .current, remote: remote)
        }
        guard let kind = MessageKind(header.body_case) else { throw .missingBody(remote: remote) }
        guard frames.count == kind.frameCount else {
            throw .frameCount(kind, count: frames.count, expected: kind.frameCount)
        }
        // protobuf-c sets the member of the body case it parsed; a null one is still not trusted.
        func body<T>(_ pointer: UnsafeMutablePointer<T>?) throws(WireError) -> T {
            guard let pointer else { throw .missingBody(remote: remote) }
            return pointer.pointee
        }
        switch kind {
        case .hello: return .hello(try WireMessage.Hello(try body(header.hello)))
        case .welcome: return .welcome(WireMessage.Welcome(try body(header.welcome)))
        case .assign: return .assign(try WireMessage.Assign(try body(header.assign)))
        case .ready: return .ready(try WireMessage.Ready(try body(header.ready)))
        case .dispatch: return .dispatch(try WireMessage.Dispatch(try body(header.dispatch), tensor: frames[1]))
        case .combine: return .combine(try WireMessage.Combine(try body(header.combine), tensor: frames[1]))
        case .heartbeat: return .heartbeat(WireMessage.Heartbeat(try body(header.heartbeat)))
        case .error: return .error(try WireMessage.ErrorReport(try body(header.error)))
        case .bye: return .bye(WireMessage.Bye(try body(header.bye)))
        case .generateRequest:
            return .generateRequest(try WireMessage.GenerateRequest(try body(header.generate_request)))
        case .generateResult: return .generateResult(WireMessage.GenerateResult(try body(header.generate_result)))
        }
    }

    /// The protocol version the generated C code declares (the `ProtocolVersion` enum of
    /// `wire.proto`), for the test that pins `ProtocolVersion.current` to the schema.
    public static var schemaProtocolVersion: ProtocolVersion {
        ProtocolVersion(
            major: UInt32(SWITCHYARD__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_MAJOR.rawValue),
            minor: UInt32(SWITCHYARD__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_MINOR.rawValue))
    }
}

extension MessageKind {
    /// The kind of a parsed header's body case; nil when unset or unknown.
    init?(_ bodyCase: Switchyard__V1__Header__BodyCase) {
        switch bodyCase {
        case SWITCHYARD__V1__HEADER__BODY_HELLO: self = .hello
        case SWITCHYARD__V1__HEADER__BODY_WELCOME: self = .welcome
        case SWITCHYARD__V1__HEADER__BODY_ASSIGN: self = .assign
        case SWITCHYARD__V1__HEADER__BODY_READY: self = .ready
        case SWITCHYARD__V1__HEADER__BODY_DISPATCH: self = .dispatch
        case SWITCHYARD__V1__HEADER__BODY_COMBINE: self = .combine
        case SWITCHYARD__V1__HEADER__BODY_HEARTBEAT: self = .heartbeat
        case SWITCHYARD__V1__HEADER__BODY_ERROR: self = .error
        case SWITCHYARD__V1__HEADER__BODY_BYE: self = .bye
        case SWITCHYARD__V1__HEADER__BODY_GENERATE_REQUEST: self = .generateRequest
        case SWITCHYARD__V1__HEADER__BODY_GENERATE_RESULT: self = .generateResult
        default: return nil
        }
    }
}
