// The bytes each token adds to the text when it follows other text: what constrained decoding
// matches against a grammar (a token is allowed when every one of its bytes is).

extension TokenDecoder {
    /// The bytes `token` decodes to in the middle of a text. Hand-written: `tokenizers` decodes
    /// whole sequences and has no per-token byte view. The first-token rules (Metaspace dropping a
    /// leading space, Strip of the text's ends) do not apply mid-text, so they are skipped; a byte
    /// step yields the raw bytes, which may be part of a multi-byte character.
    func bytesMidText(of token: String) -> [UInt8] {
        var tokens = [token]
        for step in steps {
            switch step {
            case .byteLevel:
                return Self.byteLevelBytes(tokens)
            case .byteFallback:
                if tokens.count == 1, let byte = Self.byteValue(tokens[0]) { return [byte] }
            case .metaspace(let replacement, _):
                let marker = replacement.unicodeScalars.first
                tokens = tokens.map { token in
                    var scalars = String.UnicodeScalarView()
                    for scalar in token.unicodeScalars { scalars.append(scalar == marker ? " " : scalar) }
                    return String(scalars)
                }
            case .strip:
                continue
            case .fuse, .replace, .sequence:
                tokens = step.decode(tokens)
            }
        }
        return Array(tokens.joined().utf8)
    }

    /// The steps in order, nested sequences flattened.
    private var steps: [TokenDecoder] {
        if case .sequence(let decoders) = self { return decoders.flatMap(\.steps) }
        return [self]
    }
}
