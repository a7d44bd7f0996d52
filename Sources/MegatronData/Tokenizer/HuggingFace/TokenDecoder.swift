import Foundation

/// A tokenizer.json `decoder`: turns the tokens of some ids back into text. Each step maps the
/// list of token strings to a new list; the text is their concatenation.
indirect enum TokenDecoder: Sendable {
    /// Each token's characters read as GPT-2's byte alphabet (a token with any other character
    /// stands for its own UTF-8); the bytes of all tokens decoded as UTF-8, U+FFFD where invalid.
    case byteLevel
    /// `<0xHH>` tokens become their bytes; each run of them decoded as UTF-8, or one U+FFFD per
    /// byte when the run is not valid UTF-8.
    case byteFallback
    /// All tokens joined into one.
    case fuse
    case replace(TextPattern, content: String)
    /// Removes up to `start` leading and `stop` trailing copies of `content` from each token.
    case strip(content: UInt32, start: Int, stop: Int)
    /// `replacement` becomes a space, except in the first token, where it is deleted
    /// (`stripFirst`, unless the prepend scheme is never).
    case metaspace(replacement: UInt32, stripFirst: Bool)
    case sequence([TokenDecoder])

    static func from(json value: Any?) throws -> TokenDecoder? {
        guard let value, !(value is NSNull) else { return nil }
        let fields = try JSONFields(value, "decoder")
        switch fields.type {
        case "ByteLevel": return .byteLevel
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Replace": return .replace(try fields.pattern("pattern"), content: try fields.string("content"))
        case "Strip":
            let content = try fields.string("content").unicodeScalars
            guard content.count == 1 else { throw TokenizerError("decoder Strip: content must be one character") }
            return .strip(content: content.first!.value, start: try fields.int("start"), stop: try fields.int("stop"))
        case "Metaspace":
            let replacement = try fields.string("replacement").unicodeScalars
            guard replacement.count == 1 else { throw TokenizerError("decoder Metaspace: replacement must be one character") }
            let scheme = try fields.optionalString("prepend_scheme")
            let strip = try scheme.map { $0 != "never" } ?? fields.bool("add_prefix_space", default: true)
            return .metaspace(replacement: replacement.first!.value, stripFirst: strip)
        case "Sequence": return .sequence(try fields.array("decoders").compactMap { try from(json: $0) })
        case let other: throw fields.unsupported(other ?? "(none)")
        }
    }

    func callAsFunction(_ tokens: [String]) -> [String] {
        switch self {
        case .byteLevel:
            let alphabet = ByteLevelAlphabet.shared
            var bytes: [UInt8] = []
            for token in tokens {
                if let tokenBytes = alphabet.bytes(of: token) { bytes += tokenBytes } else { bytes += token.utf8 }
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let text = String(validating: pending, as: UTF8.self) {
                    out.append(text)
                } else {
                    out += Array(repeating: "\u{FFFD}", count: pending.count)
                }
                pending = []
            }
            for token in tokens {
                if let byte = Self.fallbackByte(token) {
                    pending.append(byte)
                } else {
                    flush()
                    out.append(token)
                }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case .replace(let pattern, let content):
            return tokens.map { Normalizer.replace(pattern, content: content)($0) }
        case .strip(let content, let start, let stop):
            return tokens.map { token in
                var scalars = Substring(token).unicodeScalars
                for _ in 0 ..< start { if scalars.first?.value == content { scalars.removeFirst() } else { break } }
                for _ in 0 ..< stop { if scalars.last?.value == content { scalars.removeLast() } else { break } }
                return String(scalars)
            }
        case .metaspace(let replacement, let stripFirst):
            return tokens.enumerated().map { index, token in
                var scalars = String.UnicodeScalarView()
                for scalar in token.unicodeScalars {
                    if scalar.value != replacement { scalars.append(scalar) } else if !(index == 0 && stripFirst) { scalars.append(" ") }
                }
                return String(scalars)
            }
        case .sequence(let steps):
            return steps.reduce(tokens) { $1($0) }
        }
    }

    /// The byte of a `<0xHH>` token.
    private static func fallbackByte(_ token: String) -> UInt8? {
        let utf8 = Array(token.utf8)
        guard utf8.count == 6, token.hasPrefix("<0x"), token.hasSuffix(">") else { return nil }
        return UInt8(String(decoding: utf8[3 ..< 5], as: UTF8.self), radix: 16)
    }
}
