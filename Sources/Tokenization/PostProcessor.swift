// Post-processors: add special tokens (BOS/EOS, CLS/SEP) around an encoded single sequence.

/// A `tokenizer.json` `post_processor`, reduced to what it does to a single sequence's ids.
indirect enum PostProcessor: Sendable {
    /// The ids of the single-sequence template, with `nil` standing for the sequence itself.
    case template([[Int32]?])
    /// Byte-level offset trimming only: leaves ids unchanged.
    case byteLevel
    case sequence([PostProcessor])

    static let supportedTypes = ["TemplateProcessing", "ByteLevel", "RobertaProcessing", "BertProcessing", "Sequence"]

    init(json: JSONField) throws {
        let type = try json.typeTag()
        switch type {
        case "TemplateProcessing":
            let specialTokens = try json["special_tokens"].isNull ? [:] : json["special_tokens"].object()
            var pieces: [[Int32]?] = []
            for item in try json["single"].array() {
                let members = try item.object()
                if members["Sequence"] != nil {
                    pieces.append(nil)
                } else if let special = members["SpecialToken"] {
                    let name = try special["id"].string()
                    guard let entry = specialTokens[name] else {
                        throw special["id"].error(
                            "is \"\(name)\", but it is not listed in post_processor.special_tokens")
                    }
                    pieces.append(
                        try entry["ids"].array().map { field in
                            let id = try field.int()
                            guard id >= 0, id <= Int(Int32.max) else {
                                throw field.error("is \(id), but must be a token id")
                            }
                            return Int32(id)
                        })
                } else {
                    throw item.error("must be {\"Sequence\": ...} or {\"SpecialToken\": ...}")
                }
            }
            self = .template(pieces)
        case "ByteLevel":
            self = .byteLevel
        case "RobertaProcessing", "BertProcessing":
            // Both store the tokens as ["<s>", 0] pairs.
            func id(_ field: JSONField) throws -> Int32 {
                let pair = try field.array()
                guard pair.count == 2 else { throw field.error("must be [token, id]") }
                return Int32(clamping: try pair[1].int())
            }
            self = .template([[try id(json["cls"])], nil, [try id(json["sep"])]])
        case "Sequence":
            self = .sequence(try json["processors"].array().map(PostProcessor.init(json:)))
        default:
            throw json["type"].error(
                "is \"\(type)\", but only \(PostProcessor.supportedTypes.map { "\"\($0)\"" }.joined(separator: ", ")) are supported"
            )
        }
    }

    func process(_ ids: [Int32]) -> [Int32] {
        switch self {
        case .template(let pieces):
            return pieces.flatMap { $0 ?? ids }
        case .byteLevel:
            return ids
        case .sequence(let processors):
            return processors.reduce(ids) { $1.process($0) }
        }
    }

    /// The ids the template puts before the sequence (the BOS, for Llama-style templates).
    var leadingSpecialIDs: [Int32] {
        switch self {
        case .template(let pieces):
            return pieces.prefix { $0 != nil }.flatMap { $0 ?? [] }
        case .byteLevel:
            return []
        case .sequence(let processors):
            return processors.flatMap(\.leadingSpecialIDs)
        }
    }
}
