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

    func callAsFunction(_ text: String) -> String {
        switch self {
        case .nfc: return text.precomposedStringWithCanonicalMapping
        case .nfd: return text.decomposedStringWithCanonicalMapping
        case .nfkc: return text.precomposedStringWithCompatibilityMapping
        case .nfkd: return text.decomposedStringWithCompatibilityMapping
        case .lowercase: return text.lowercased()
        case .prepend(let prefix): return text.isEmpty ? text : prefix + text
        case .replace(let pattern, let content):
            let classified = ClassifiedText(text)
            var out = String.UnicodeScalarView()
            var last = 0
            for match in pattern.matches(in: classified, range: 0 ..< classified.scalars.count) {
                for value in classified.scalars[last ..< match.lowerBound] { out.append(Unicode.Scalar(value)!) }
                for scalar in content.unicodeScalars { out.append(scalar) }   // (append(contentsOf:) copies `out` each time)
                last = match.upperBound
            }
            for value in classified.scalars[last...] { out.append(Unicode.Scalar(value)!) }
            return String(out)
        case .strip(let left, let right):
            var scalars = Substring(text).unicodeScalars
            if left { while let first = scalars.first, first.properties.isWhitespace { scalars.removeFirst() } }
            if right { while let last = scalars.last, last.properties.isWhitespace { scalars.removeLast() } }
            return String(scalars)
        case .sequence(let normalizers): return normalizers.reduce(text) { $1($0) }
        }
    }
}
