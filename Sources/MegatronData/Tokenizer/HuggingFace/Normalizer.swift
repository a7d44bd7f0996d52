import Foundation

/// A tokenizer.json `normalizer`: rewrites each stretch of text between added tokens before it is
/// pre-tokenized. Unicode normal forms come from Foundation (ICU's tables).
indirect enum Normalizer: Sendable {
    case nfc, nfd, nfkc, nfkd, lowercase
    /// Puts `prefix` before a non-empty text.
    case prepend(String)
    /// Replaces every match of the pattern, left to right, with `content`.
    case replace(TextPattern, content: String)
    /// Removes leading (`left`) and trailing (`right`) White_Space.
    case strip(left: Bool, right: Bool)
    case sequence([Normalizer])

    /// The normalizer a tokenizer.json describes (nil for `null`); one this project cannot apply
    /// (SentencePiece's Precompiled, BERT's, …) is an error that names it.
    static func from(json value: Any?) throws -> Normalizer? {
        guard let value, !(value is NSNull) else { return nil }
        let fields = try JSONFields(value, "normalizer")
        switch fields.type {
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Prepend": return .prepend(try fields.string("prepend"))
        case "Replace": return .replace(try fields.pattern("pattern"), content: try fields.string("content"))
        case "Strip": return .strip(left: try fields.bool("strip_left", default: true), right: try fields.bool("strip_right", default: true))
        case "Sequence": return .sequence(try fields.array("normalizers").compactMap { try from(json: $0) })
        case let other: throw fields.unsupported(other ?? "(none)")
        }
    }

    /// The normalized form of `text`.
    func callAsFunction(_ text: String) -> String {
        String(String.UnicodeScalarView(self(text.unicodeScalars.map(\.value)).map { Unicode.Scalar($0)! }))
    }

    /// The normalized form of a text given as scalars (Unicode forms and lower case go through
    /// String; the rest works on the scalars).
    func callAsFunction(_ scalars: [UInt32]) -> [UInt32] {
        func viaString(_ transform: (String) -> String) -> [UInt32] {
            if case .lowercase = self {} else if !scalars.contains(where: { $0 >= 0x80 }) { return scalars }   // ASCII: every form is itself
            return transform(String(String.UnicodeScalarView(scalars.map { Unicode.Scalar($0)! }))).unicodeScalars.map(\.value)
        }
        switch self {
        case .nfc: return viaString { $0.precomposedStringWithCanonicalMapping }
        case .nfd: return viaString { $0.decomposedStringWithCanonicalMapping }
        case .nfkc: return viaString { $0.precomposedStringWithCompatibilityMapping }
        case .nfkd: return viaString { $0.decomposedStringWithCompatibilityMapping }
        case .lowercase: return viaString { $0.lowercased() }
        case .prepend(let prefix): return scalars.isEmpty ? scalars : prefix.unicodeScalars.map(\.value) + scalars
        case .replace(let pattern, let content):
            let replacement = content.unicodeScalars.map(\.value)
            var out: [UInt32] = []
            out.reserveCapacity(scalars.count)
            var last = 0
            for match in pattern.matches(in: scalars) {
                out += scalars[last ..< match.lowerBound]
                out += replacement
                last = match.upperBound
            }
            out += scalars[last...]
            return out
        case .strip(let left, let right):
            func isWhitespace(_ value: UInt32) -> Bool { Unicode.Scalar(value)?.properties.isWhitespace ?? false }
            var start = 0, end = scalars.count
            if left { while start < end && isWhitespace(scalars[start]) { start += 1 } }
            if right { while end > start && isWhitespace(scalars[end - 1]) { end -= 1 } }
            return Array(scalars[start ..< end])
        case .sequence(let normalizers): return normalizers.reduce(scalars) { $1($0) }
        }
    }
}
