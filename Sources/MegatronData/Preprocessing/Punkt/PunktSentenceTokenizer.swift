import Foundation

/// NLTK's Punkt sentence splitter (nltk.tokenize.punkt.PunktSentenceTokenizer.tokenize), which
/// Megatron's tools/preprocess_data.py --split-sentences runs, with NLTK's English language variables:
///
/// 1. Candidate ends: each ".", "?" or "!" followed by other punctuation or by white space and a
///    token; its context is the word before it, itself, and what follows.
/// 2. A candidate ends a sentence when its context, split into words, holds a sentence break
///    before its last word. A word is a break if it is ".", "?" or "!", or ends in one period and
///    is not a known abbreviation (an ellipsis is not a break); then, looking at the next word, a
///    known collocation makes it an abbreviation, an abbreviation or ellipsis becomes a break when
///    the next word is a sentence starter by the orthographic evidence or a capitalised frequent
///    starter, and an initial or a number stops being a break when the next word is not.
/// 3. Closing quotes and brackets after an end stay with its sentence, and the last sentence
///    loses its trailing white space.
///
/// `keepNewlines` is preprocess_data.py's --keep-newlines (its CustomLanguageVars): white space
/// after an end stays with the sentence before it. Texts are indexed in UTF-16 here, code points
/// in Python; the sentences are the same.
public struct PunktSentenceTokenizer: @unchecked Sendable {
    public let parameters: PunktParameters
    public let keepNewlines: Bool
    private let wordPattern: NSRegularExpression
    private let periodContextPattern: NSRegularExpression
    private let realignmentPattern: NSRegularExpression
    private let numericPattern: NSRegularExpression

    /// Python's `\s` and `\S` (str.isspace), which ICU's lack \v, U+001C … U+001F and U+0085 of.
    private static let space = #"[\s\x{0B}\x{1C}-\x{1F}\x{85}]"#, nonSpace = #"[^\s\x{0B}\x{1C}-\x{1F}\x{85}]"#
    private static let nonWord = #"(?:[)";}\]*:@'({\[\x{2018}\x{2019}\x{201C}\x{201D}\x{AB}\x{BB}?!])"#
    private static let multiCharacter = #"(?:-{2,}|\.{2,}|(?:\.\#(space)){2,}\.)"#
    private static let wordStart = #"[^("`{\[:;&#*@)}\]\-,]"#
    static let punctuation: Set<String> = [";", ":", ",", ".", "!", "?"]

    public init(parameters: PunktParameters, keepNewlines: Bool = false) throws {
        self.parameters = parameters
        self.keepNewlines = keepNewlines
        let (s, S, nonWord, multi) = (Self.space, Self.nonSpace, Self.nonWord, Self.multiCharacter)
        wordPattern = try NSRegularExpression(pattern: "\(multi)|(?=\(Self.wordStart))\(S)+?(?=\(s)|\\z|\(nonWord)|\(multi)|,(?=\\z|\(s)|\(nonWord)|\(multi)))|\(S)")
        // Groups: 1 what follows (after_tok), 2 the next token (next_tok).
        periodContextPattern = try NSRegularExpression(pattern: keepNewlines
            ? "\(S)*[.?!]\(s)*(?=(\(nonWord)|(\(S)+)))"
            : "[.?!](?=(\(nonWord)|\(s)+(\(S)+)))")
        realignmentPattern = try NSRegularExpression(pattern: #"["')\]}\x{2018}\x{2019}\x{201C}\x{201D}\x{AB}\x{BB}]+?(?:"# + s + #"+|(?=--)|(?=\n|\z))"#)
        numericPattern = try NSRegularExpression(pattern: #"^-?[.,]?\d[\d,.\-]*\.?\z"#)
    }

    /// The sentences of `text`, in order.
    public func sentences(_ text: String) -> [String] {
        let ns = text as NSString
        return realigned(slices(of: ns), in: ns).map { ns.substring(with: NSRange(location: $0.lowerBound, length: $0.count)) }
    }

    // MARK: - Candidate ends

    /// `_slices_from_text`: the sentences' UTF-16 ranges before realignment.
    private func slices(of text: NSString) -> [Range<Int>] {
        var slices: [Range<Int>] = [], lastBreak = 0
        for (match, context) in potentialEnds(in: text) where containsSentenceBreak(context) {
            slices.append(lastBreak ..< max(lastBreak, match.range.upperBound))
            let next = match.range(at: 2)
            lastBreak = next.location != NSNotFound && next.length > 0 ? next.location : match.range.upperBound
        }
        let end = Self.rstrippedLength(text)
        slices.append(lastBreak ..< max(lastBreak, end))
        return slices
    }

    /// `_match_potential_end_contexts`: each candidate end with its context (the word before it, the
    /// match and what follows), dropping a candidate whose word overlaps the next one's.
    private func potentialEnds(in text: NSString) -> [(NSTextCheckingResult, String)] {
        var ends: [(NSTextCheckingResult, String)] = []
        var previousSlice = 0 ..< 0
        var previous: NSTextCheckingResult?
        func context(_ match: NSTextCheckingResult, word: Range<Int>) -> String {
            text.substring(with: NSRange(location: word.lowerBound, length: word.count)) + text.substring(with: match.range)
                + text.substring(with: match.range(at: 1))
        }
        for match in periodContextPattern.matches(in: text as String, range: NSRange(location: 0, length: text.length)) {
            let before = previousSlice.upperBound ..< match.range.location
            var wordStart = previousSlice.lowerBound
            // The last ASCII white space before the match (none, or at 0: the previous word's start).
            if let space = before.reversed().first(where: { Self.isASCIIWhitespace(text.character(at: $0)) }), space > before.lowerBound {
                wordStart = space + 1
            }
            let word = wordStart ..< match.range.location
            if let previous, previousSlice.upperBound <= word.lowerBound { ends.append((previous, context(previous, word: previousSlice))) }
            previous = match
            previousSlice = word
        }
        if let previous { ends.append((previous, context(previous, word: previousSlice))) }
        return ends
    }

    /// Python's `string.whitespace`.
    private static func isASCIIWhitespace(_ unit: unichar) -> Bool { [0x20, 0x09, 0x0A, 0x0D, 0x0B, 0x0C].contains(unit) }

    /// UTF-16 length of `text` without trailing Python white space (`rstrip`).
    private static func rstrippedLength(_ text: NSString) -> Int {
        let trimmed = Substring(text as String).unicodeScalars.reversed().drop { PythonText.isWhitespace($0) }
        return trimmed.reduce(0) { $0 + ($1.value > 0xFFFF ? 2 : 1) }
    }

    /// `_realign_boundaries`: closing quotes and brackets at the start of a sentence join the one before.
    private func realigned(_ slices: [Range<Int>], in text: NSString) -> [Range<Int>] {
        var out: [Range<Int>] = [], realign = 0
        for (i, slice) in slices.enumerated() {
            let start = slice.lowerBound + realign, nonEmpty = start < slice.upperBound
            guard i + 1 < slices.count else {
                if nonEmpty { out.append(start ..< slice.upperBound) }
                continue
            }
            let second = slices[i + 1]
            let following = text.substring(with: NSRange(location: second.lowerBound, length: second.count))
            if let m = realignmentPattern.firstMatch(in: following, options: .anchored, range: NSRange(location: 0, length: (following as NSString).length)) {
                let matched = (following as NSString).substring(with: m.range)
                let end = second.lowerBound + Self.rstrippedLength(matched as NSString)
                // Python yields this one even when it is empty.
                out.append(start ..< max(start, end))
                realign = m.range.upperBound
            } else {
                realign = 0
                if nonEmpty { out.append(start ..< slice.upperBound) }
            }
        }
        return out
    }

    // MARK: - Annotation

    /// One word with its annotations.
    struct Token {
        let text: String
        /// Lower case, a number as "##number##".
        let type: String
        var sentenceBreak = false, abbreviation = false, ellipsis = false

        var periodFinal: Bool { text.unicodeScalars.last == "." }
        var typeWithoutPeriod: String {
            type.unicodeScalars.count > 1 && type.unicodeScalars.last == "." ? String(type.unicodeScalars.dropLast()) : type
        }
        var typeWithoutSentencePeriod: String { sentenceBreak ? typeWithoutPeriod : type }
        var firstUpper: Bool { text.unicodeScalars.first?.properties.isUppercase ?? false }
        var firstLower: Bool { text.unicodeScalars.first?.properties.isLowercase ?? false }
        var isInitial: Bool {
            let scalars = Array(text.unicodeScalars)
            return scalars.count == 2 && scalars[1] == "." && Self.isWordCharacterNotDigit(scalars[0])
        }

        /// Python's `[^\W\d]`: a letter, a numeric character that is not a decimal digit, or "_".
        static func isWordCharacterNotDigit(_ scalar: Unicode.Scalar) -> Bool {
            switch scalar.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter, .letterNumber, .otherNumber: true
            case .decimalNumber: false
            default: scalar == "_" || scalar.properties.numericType != nil
            }
        }
    }

    /// `text_contains_sentbreak`: a break before the last word of `context`.
    func containsSentenceBreak(_ context: String) -> Bool {
        let tokens = annotated(words(context))
        return tokens.dropLast().contains { $0.sentenceBreak }
    }

    /// `_tokenize_words`: the words of each non-blank line.
    func words(_ text: String) -> [Token] {
        var tokens: [Token] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(line)
            guard !line.unicodeScalars.allSatisfy(PythonText.isWhitespace) else { continue }
            for match in wordPattern.matches(in: line, range: NSRange(location: 0, length: (line as NSString).length)) {
                let word = (line as NSString).substring(with: match.range)
                tokens.append(Token(text: word, type: type(of: word)))
            }
        }
        return tokens
    }

    private func type(of word: String) -> String {
        let lower = String(PythonText.lowercased(word.unicodeScalars))
        let isNumber = numericPattern.firstMatch(in: lower, range: NSRange(location: 0, length: (lower as NSString).length)) != nil
        return isNumber ? "##number##" : lower
    }

    /// Both passes over `tokens`.
    func annotated(_ tokens: [Token]) -> [Token] {
        var tokens = tokens.map(firstPass)
        for i in tokens.indices.dropLast() { secondPass(&tokens[i], next: tokens[i + 1]) }
        return tokens
    }

    /// `_first_pass_annotation`: by the word alone.
    private func firstPass(_ token: Token) -> Token {
        var token = token
        let text = token.text, scalars = Array(text.unicodeScalars)
        if ["." , "?", "!"].contains(text) {
            token.sentenceBreak = true
        } else if scalars.count >= 2, scalars.allSatisfy({ $0 == "." }) {
            token.ellipsis = true
        } else if token.periodFinal && !(scalars.count >= 2 && scalars[scalars.count - 2] == ".") {
            let stem = String(PythonText.lowercased(String.UnicodeScalarView(scalars.dropLast())))
            if parameters.abbreviationTypes.contains(stem)
                || parameters.abbreviationTypes.contains(String(stem.split(separator: "-", omittingEmptySubsequences: false).last!)) {
                token.abbreviation = true
            } else {
                token.sentenceBreak = true
            }
        }
        return token
    }

    /// `_second_pass_annotation`: a word ending in a period, revised by the word after it.
    private func secondPass(_ token: inout Token, next: Token) {
        guard token.periodFinal else { return }
        let type = token.typeWithoutPeriod, nextType = next.typeWithoutSentencePeriod, isInitial = token.isInitial
        if parameters.collocations.contains(type + "\t" + nextType) {
            token.sentenceBreak = false
            token.abbreviation = true
            return
        }
        if (token.abbreviation || token.ellipsis) && !isInitial {
            if orthographicHeuristic(next) == true {
                token.sentenceBreak = true
                return
            }
            if next.firstUpper && parameters.sentenceStarters.contains(nextType) {
                token.sentenceBreak = true
                return
            }
        }
        if isInitial || type == "##number##" {
            let startsSentence = orthographicHeuristic(next)
            if startsSentence == false {
                token.sentenceBreak = false
                token.abbreviation = true
                return
            }
            if startsSentence == nil && isInitial && next.firstUpper
                && parameters.orthographicContext[nextType, default: 0] & PunktParameters.lower == 0 {
                token.sentenceBreak = false
                token.abbreviation = true
            }
        }
    }

    /// `_ortho_heuristic`: whether `token` starts a sentence (nil: unknown).
    private func orthographicHeuristic(_ token: Token) -> Bool? {
        if Self.punctuation.contains(token.text) { return false }
        let context = parameters.orthographicContext[token.typeWithoutSentencePeriod, default: 0]
        if token.firstUpper && context & PunktParameters.lower != 0 && context & PunktParameters.middleUpper == 0 { return true }
        if token.firstLower && (context & PunktParameters.upper != 0 || context & PunktParameters.beginLower == 0) { return false }
        return nil
    }
}
