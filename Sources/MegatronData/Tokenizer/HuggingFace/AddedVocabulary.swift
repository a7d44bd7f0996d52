import Foundation

/// A tokenizer.json's `added_tokens`: strings that are cut out of the text before the model sees
/// it and become their own id. Matching is leftmost-longest over the set; a `single_word` token
/// only matches with no word character (Rust's `\w`: alphabetic, marks, decimal digits, connector
/// punctuation, joiners) on either side — a rejected match is skipped whole, hiding any token inside
/// it; `lstrip`/`rstrip` widen a match over the White_Space before/after it (which is thereby
/// dropped). Tokens with `normalized` false are found in the raw text, the others, in their
/// normalized form (which is also what they decode to), in each normalized stretch between.
///
/// Ids are given as `tokenizers` gives them when it loads the file, not as the file writes them:
/// in the file's order, a token that is in the model's vocabulary takes its id there, any other the
/// next id after the added ones, or the vocabulary's size (its number of entries) if that is more.
struct AddedVocabulary: Sendable {
    struct Token: Sendable {
        let id: Int32
        let content: [UInt32]
        let special: Bool
        let singleWord: Bool
        let leftStrip: Bool
        let rightStrip: Bool
        let normalized: Bool
    }

    /// Tokens by id, and the id of each token's content.
    let tokens: [Int32: Token]
    let idOfContent: [String: Int32]
    /// The two matching sets: raw-text tokens and normalized-text tokens.
    let raw: TokenMatcher
    let normalized: TokenMatcher

    init(json value: Any?, model: BPEModel, normalizer: Normalizer?) throws {
        var tokens: [Int32: Token] = [:]
        var idOfContent: [String: Int32] = [:]
        var largest = -1
        for (index, entry) in (value as? [Any] ?? []).enumerated() {
            let fields = try JSONFields(entry, "added_tokens[\(index)]")
            let content = try fields.string("content")
            guard !content.isEmpty else { throw TokenizerError("added_tokens[\(index)]: empty content") }
            if idOfContent[content] != nil { continue }
            let id = model.vocabulary[content] ?? Int32(largest >= model.vocabulary.count ? largest + 1 : model.vocabulary.count)
            largest = max(largest, Int(id))
            let special = try fields.bool("special", default: false)
            let normalized = try fields.bool("normalized", default: !special)
            let form = normalized ? normalizer.map { $0(content) } ?? content : content
            tokens[id] = Token(id: id, content: form.unicodeScalars.map(\.value), special: special,
                               singleWord: try fields.bool("single_word", default: false),
                               leftStrip: try fields.bool("lstrip", default: false),
                               rightStrip: try fields.bool("rstrip", default: false),
                               normalized: normalized)
            idOfContent[content] = id
        }
        self.tokens = tokens
        self.idOfContent = idOfContent
        raw = TokenMatcher(tokens.values.filter { !$0.normalized })
        normalized = TokenMatcher(tokens.values.filter(\.normalized))
    }

    var isEmpty: Bool { tokens.isEmpty }

    /// A stretch of text cut at the added tokens: text (as scalar ranges) or a token id.
    enum Segment {
        case text(Range<Int>)
        case token(Int32)
    }

    /// Cuts `scalars[range]` at the matches of `matcher`'s tokens.
    func split(_ scalars: [UInt32], _ range: Range<Int>, _ matcher: TokenMatcher) -> [Segment] {
        var segments: [Segment] = []
        var textStart = range.lowerBound
        var position = range.lowerBound
        while position < range.upperBound {
            guard let token = matcher.longestMatch(scalars, at: position, end: range.upperBound) else {
                position += 1
                continue
            }
            var start = position, end = position + token.content.count
            if token.singleWord {
                let wordBefore = start > range.lowerBound && Self.isWordCharacter(scalars[start - 1])
                let wordAfter = end < range.upperBound && Self.isWordCharacter(scalars[end])
                if wordBefore || wordAfter {
                    position = end
                    continue
                }
            }
            if token.leftStrip {
                while start > textStart && Self.isWhitespace(scalars[start - 1]) { start -= 1 }
            }
            if token.rightStrip {
                while end < range.upperBound && Self.isWhitespace(scalars[end]) { end += 1 }
            }
            if start > textStart { segments.append(.text(textStart ..< start)) }
            segments.append(.token(token.id))
            textStart = end
            position = end
        }
        if textStart < range.upperBound { segments.append(.text(textStart ..< range.upperBound)) }
        return segments
    }

    private static func isWordCharacter(_ value: UInt32) -> Bool {
        guard let scalar = Unicode.Scalar(value) else { return false }
        let properties = scalar.properties
        return properties.isAlphabetic || properties.isJoinControl
            || ScalarSet.classBits(value) & (ScalarSet.wordBits & ~ScalarSet.propertyBits("L")!) != 0
    }

    private static func isWhitespace(_ value: UInt32) -> Bool {
        Unicode.Scalar(value)?.properties.isWhitespace ?? false
    }
}

/// Finds added tokens in text: the tokens grouped by first scalar, longest first.
struct TokenMatcher: Sendable {
    private let byFirstScalar: [UInt32: [AddedVocabulary.Token]]
    /// ASCII first scalars, as a bit set, to skip most positions without a dictionary lookup.
    private let asciiFirst: (UInt64, UInt64)

    init(_ tokens: [AddedVocabulary.Token]) {
        var byFirstScalar: [UInt32: [AddedVocabulary.Token]] = [:]
        var low: UInt64 = 0, high: UInt64 = 0
        for token in tokens {
            guard let first = token.content.first else { continue }
            byFirstScalar[first, default: []].append(token)
            if first < 64 { low |= 1 << UInt64(first) } else if first < 128 { high |= 1 << UInt64(first - 64) }
        }
        self.byFirstScalar = byFirstScalar.mapValues { $0.sorted { $0.content.count > $1.content.count } }
        asciiFirst = (low, high)
    }

    var isEmpty: Bool { byFirstScalar.isEmpty }

    func longestMatch(_ scalars: [UInt32], at position: Int, end: Int) -> AddedVocabulary.Token? {
        let first = scalars[position]
        if first < 64 { if asciiFirst.0 >> UInt64(first) & 1 == 0 { return nil } }
        else if first < 128 { if asciiFirst.1 >> UInt64(first - 64) & 1 == 0 { return nil } }
        guard let candidates = byFirstScalar[first] else { return nil }
        for token in candidates where position + token.content.count <= end {
            if scalars[position ..< position + token.content.count].elementsEqual(token.content) { return token }
        }
        return nil
    }
}
