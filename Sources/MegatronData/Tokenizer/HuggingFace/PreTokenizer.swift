import Foundation

/// Text being cut into the pieces a BPE model encodes one by one: its scalars (classified for the
/// pattern matcher) and the pieces as ranges of them, in order, covering what is kept.
struct PreTokenizedText {
    var text: ClassifiedText
    var pieces: [Range<Int>]

    init(_ scalars: [UInt32]) {
        text = ClassifiedText(scalars)
        pieces = scalars.isEmpty ? [] : [0 ..< scalars.count]
    }

    /// Rewrites each piece's scalars (the pieces keep their order; empty results are dropped).
    mutating func rewritePieces(_ rewrite: (_ index: Int, _ scalars: ArraySlice<UInt32>) -> [UInt32]) {
        var scalars: [UInt32] = []
        var newPieces: [Range<Int>] = []
        for (index, piece) in pieces.enumerated() {
            let start = scalars.count
            scalars += rewrite(index, text.scalars[piece])
            if scalars.count > start { newPieces.append(start ..< scalars.count) }
        }
        text = ClassifiedText(scalars)
        pieces = newPieces
    }
}

/// How `Split` treats the matches of its pattern (tokenizers' SplitDelimiterBehavior).
enum SplitDelimiterBehavior: String, Sendable {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"

    /// The pieces of `range` given the `matches` of the delimiter in it (sorted, not overlapping;
    /// an empty one only cuts); empty pieces are dropped.
    func split(_ range: Range<Int>, matches: [Range<Int>], invert: Bool) -> [Range<Int>] {
        // Spans covering the range: the gaps and the matches, each flagged as a delimiter or not.
        var spans: [(range: Range<Int>, delimiter: Bool)] = []
        var last = range.lowerBound
        for match in matches {
            if match.lowerBound > last { spans.append((last ..< match.lowerBound, invert)) }
            spans.append((match, !invert))
            last = match.upperBound
        }
        if last < range.upperBound { spans.append((last ..< range.upperBound, invert)) }

        var pieces: [Range<Int>] = []
        switch self {
        case .removed:
            pieces = spans.filter { !$0.delimiter }.map(\.range)
        case .isolated:
            pieces = spans.map(\.range)
        case .mergedWithPrevious:
            var previousIsDelimiter = false
            for span in spans {
                if span.delimiter && !previousIsDelimiter, let previous = pieces.last {
                    pieces[pieces.count - 1] = previous.lowerBound ..< span.range.upperBound
                } else {
                    pieces.append(span.range)
                }
                previousIsDelimiter = span.delimiter
            }
        case .mergedWithNext:
            var pendingStart: Int?
            for span in spans {
                if span.delimiter {
                    if pendingStart != nil { pieces.append(pendingStart! ..< span.range.lowerBound) }
                    pendingStart = span.range.lowerBound
                } else {
                    pieces.append((pendingStart ?? span.range.lowerBound) ..< span.range.upperBound)
                    pendingStart = nil
                }
            }
            if let pendingStart { pieces.append(pendingStart ..< range.upperBound) }
        case .contiguous:
            var previousIsDelimiter = false
            for span in spans {
                if span.delimiter && previousIsDelimiter, let previous = pieces.last {
                    pieces[pieces.count - 1] = previous.lowerBound ..< span.range.upperBound
                } else {
                    pieces.append(span.range)
                }
                previousIsDelimiter = span.delimiter
            }
        }
        return pieces.filter { !$0.isEmpty }
    }
}

/// A tokenizer.json `pre_tokenizer`: cuts a normalized stretch of text into pieces.
indirect enum PreTokenizer: Sendable {
    /// GPT-2's byte level: a space before each piece that lacks one (`addPrefixSpace`), then GPT-2's
    /// pattern (`useRegex`); the model then sees each piece's UTF-8 bytes.
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case split(TextPattern, SplitDelimiterBehavior, invert: Bool)
    /// SentencePiece's spaces: each " " becomes `replacement`, which is also put before the text
    /// (`prepend`: always, or only before the start of the whole input), and, with `split`, each
    /// replacement starts a new piece.
    case metaspace(replacement: UInt32, prepend: MetaspacePrepend, split: Bool)
    /// Numbers (Unicode Nd/Nl/No) apart from the rest: each digit alone, or runs of them.
    case digits(individually: Bool)
    case sequence([PreTokenizer])

    enum MetaspacePrepend: String, Sendable { case always, first, never }

    static let gpt2Pattern = try! UnicodeRegex(#"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#)
    private static let digitPattern = try! UnicodeRegex(#"\p{N}"#)

    static func from(json value: Any?) throws -> PreTokenizer? {
        guard let value, !(value is NSNull) else { return nil }
        let fields = try JSONFields(value, "pre_tokenizer")
        switch fields.type {
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: try fields.bool("add_prefix_space", default: true), useRegex: try fields.bool("use_regex", default: true))
        case "Split":
            let behaviorName = try fields.string("behavior")
            guard let behavior = SplitDelimiterBehavior(rawValue: behaviorName) else {
                throw TokenizerError("pre_tokenizer Split: unknown behavior \(behaviorName.debugDescription)")
            }
            return .split(try fields.pattern("pattern"), behavior, invert: try fields.bool("invert", default: false))
        case "Metaspace":
            let replacement = try fields.string("replacement").unicodeScalars
            guard replacement.count == 1 else { throw TokenizerError("pre_tokenizer Metaspace: replacement must be one character") }
            var prepend = MetaspacePrepend.always
            if let scheme = try fields.optionalString("prepend_scheme") {
                guard let known = MetaspacePrepend(rawValue: scheme) else {
                    throw TokenizerError("pre_tokenizer Metaspace: unknown prepend_scheme \(scheme.debugDescription)")
                }
                prepend = known
            } else if !(try fields.bool("add_prefix_space", default: true)) {
                prepend = .never
            }
            return .metaspace(replacement: replacement.first!.value, prepend: prepend, split: try fields.bool("split", default: true))
        case "Digits":
            return .digits(individually: try fields.bool("individual_digits", default: false))
        case "Sequence":
            let steps = try fields.array("pretokenizers").compactMap { try from(json: $0) }
            for step in steps.dropLast() {
                if case .byteLevel = step { throw TokenizerError("pre_tokenizer Sequence: ByteLevel must come last") }
            }
            return .sequence(steps)
        case let other: throw fields.unsupported(other ?? "(none)")
        }
    }

    /// Whether the model reads pieces as bytes (a ByteLevel step, which comes last).
    var isByteLevel: Bool {
        switch self {
        case .byteLevel: true
        case .sequence(let steps): steps.last?.isByteLevel ?? false
        default: false
        }
    }

    /// Cuts `text`; `atStart`: this stretch begins the whole input (Metaspace's "first").
    func callAsFunction(_ text: inout PreTokenizedText, atStart: Bool) {
        switch self {
        case .byteLevel(let addPrefixSpace, let useRegex):
            if addPrefixSpace {
                text.rewritePieces { _, scalars in scalars.first == 0x20 ? Array(scalars) : [0x20] + scalars }
            }
            if useRegex { Self.split(&text, .regex(Self.gpt2Pattern), .isolated, invert: false) }
        case .split(let pattern, let behavior, let invert):
            Self.split(&text, pattern, behavior, invert: invert)
        case .metaspace(let replacement, let prepend, let split):
            text.rewritePieces { index, scalars in
                var out = scalars.map { $0 == 0x20 ? replacement : $0 }
                let prefix = prepend == .always || (prepend == .first && atStart && index == 0)
                if prefix && out.first != replacement { out.insert(replacement, at: 0) }
                return out
            }
            if split {
                let delimiter = String(Unicode.Scalar(replacement)!)
                Self.split(&text, .literal(delimiter), .mergedWithNext, invert: false)
            }
        case .digits(let individually):
            Self.split(&text, .regex(Self.digitPattern), individually ? .isolated : .contiguous, invert: false)
        case .sequence(let steps):
            for step in steps { step(&text, atStart: atStart) }
        }
    }

    private static func split(_ text: inout PreTokenizedText, _ pattern: TextPattern, _ behavior: SplitDelimiterBehavior, invert: Bool) {
        var pieces: [Range<Int>] = []
        for piece in text.pieces {
            pieces += behavior.split(piece, matches: pattern.matches(in: text.text, range: piece), invert: invert)
        }
        text.pieces = pieces
    }
}
