// HEARTBEAT, ERROR, BYE <-> protobuf-c structs.
import CProtobufC
import Tensors

extension WireMessage.Heartbeat {
    func cMessage(in arena: CArena) -> UnsafeMutablePointer<Switchyard__V1__Heartbeat> {
        var c = Switchyard__V1__Heartbeat()
        switchyard__v1__heartbeat__init(&c)
        c.sent_unix_millis = sentUnixMillis
        return arena.box(c)
    }

    init(_ c: Switchyard__V1__Heartbeat) {
        self.init(sentUnixMillis: c.sent_unix_millis)
    }
}

extension WireMessage.ErrorReport {
    func cMessage(in arena: CArena) -> UnsafeMutablePointer<Switchyard__V1__Error> {
        var c = Switchyard__V1__Error()
        switchyard__v1__error__init(&c)
        c.code = Switchyard__V1__ErrorCode(rawValue: numericCast(code.rawValue))
        c.message = arena.string(message)
        if let requestID {
            c.request_id = requestID.rawValue
            c.has_request_id = 1
        }
        if let layer {
            c.layer = wireUInt32(layer.rawValue, "ERROR layer")
            c.has_layer = 1
        }
        return arena.box(c)
    }

    init(_ c: Switchyard__V1__Error) throws(WireError) {
        guard let code = Code(rawValue: UInt32(truncatingIfNeeded: c.code.rawValue)) else {
            throw .invalidField(
                .error, field: "code", reason: "is \(c.code.rawValue), but must be between 1 (BAD_FRAME) and 7 (BAD_REQUEST)")
        }
        self.init(
            code: code, message: swiftString(c.message),
            requestID: c.has_request_id != 0 ? RequestID(c.request_id) : nil,
            layer: c.has_layer != 0 ? LayerIndex(Int(c.layer)) : nil)
    }
}

extension WireMessage.Bye {
    func cMessage(in arena: CArena) -> UnsafeMutablePointer<Switchyard__V1__Bye> {
        var c = Switchyard__V1__Bye()
        switchyard__v1__bye__init(&c)
        c.reason = arena.string(reason)
        return arena.box(c)
    }

    init(_ c: Switchyard__V1__Bye) {
        self.init(reason: swiftString(c.reason))
    }
}
