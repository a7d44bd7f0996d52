/// A regular expression as a tree, before `UnicodeRegex` compiles it.
indirect enum RegexNode {
    /// One scalar of the set.
    case set(ScalarSet)
    case sequence([RegexNode])
    /// The first alternative that lets the whole expression match (leftmost-first, as Oniguruma,
    /// fancy-regex and Python's `regex` choose).
    case alternation([RegexNode])
    /// `min` to `max` (nil: unbounded) repetitions.
    case repetition(RegexNode, min: Int, max: Int?, mode: RepetitionMode)
    /// `(?>…)`: the first way the inside matches, never revisited.
    case atomic(RegexNode)
    /// `(?=…)` / `(?!…)`: whether the inside matches here, consuming nothing.
    case lookahead(RegexNode, negated: Bool)

    enum RepetitionMode { case greedy, lazy, possessive }

    /// Whether the node can match without consuming a scalar.
    var canBeEmpty: Bool {
        switch self {
        case .set: false
        case .sequence(let nodes): nodes.allSatisfy(\.canBeEmpty)
        case .alternation(let nodes): nodes.contains(where: \.canBeEmpty)
        case .repetition(let node, let min, _, _): min == 0 || node.canBeEmpty
        case .atomic(let node): node.canBeEmpty
        case .lookahead: true
        }
    }
}

/// Parses the regular expressions tokenizer files carry (Oniguruma's syntax as `tokenizers` reads
/// it, fancy-regex's as tiktoken reads it): literals and escapes (`\n \r \t \f \v \xHH \x{H…}
/// \uHHHH`, escaped punctuation), `.`, classes `[…]` / `[^…]` with ranges, `\s \S \d \D \w \W`,
/// `\p{…}` / `\P{…}` (general categories, White_Space), groups `(…)`, `(?:…)`, `(?i:…)`, `(?i)`,
/// `(?>…)`, lookaheads `(?=…)` `(?!…)`, and the quantifiers `? * + {n} {n,} {n,m}`, each greedy,
/// lazy (`?` after it) or possessive (`+` after it). Anything else — anchors, back-references,
/// lookbehinds, scripts — is an error that names it, never a silently different match.
struct RegexParser {
    private let pattern: [Unicode.Scalar]
    private var index = 0
    private var caseInsensitive = false

    static func parse(_ pattern: String) throws -> RegexNode {
        var parser = RegexParser(pattern: Array(pattern.unicodeScalars))
        let node = try parser.parseAlternation()
        guard parser.index == parser.pattern.count else { throw parser.error("unbalanced ')'") }
        return node
    }

    private init(pattern: [Unicode.Scalar]) { self.pattern = pattern }

    private func error(_ message: String) -> TokenizerError {
        TokenizerError("regular expression \(String(String.UnicodeScalarView(pattern)).debugDescription): at character \(index): \(message)")
    }

    private var peek: Unicode.Scalar? { index < pattern.count ? pattern[index] : nil }

    private mutating func next() throws -> Unicode.Scalar {
        guard let scalar = peek else { throw error("unexpected end of the pattern") }
        index += 1
        return scalar
    }

    private mutating func take(_ scalar: Unicode.Scalar) -> Bool {
        guard peek == scalar else { return false }
        index += 1
        return true
    }

    private mutating func parseAlternation() throws -> RegexNode {
        var alternatives = [try parseSequence()]
        while take("|") { alternatives.append(try parseSequence()) }
        return alternatives.count == 1 ? alternatives[0] : .alternation(alternatives)
    }

    private mutating func parseSequence() throws -> RegexNode {
        var nodes: [RegexNode] = []
        while let scalar = peek, scalar != "|", scalar != ")" {
            if let atom = try parseAtom() { nodes.append(try parseQuantifiers(atom)) }
        }
        return nodes.count == 1 ? nodes[0] : .sequence(nodes)
    }

    /// One atom, or nil for a flag group such as `(?i)` that only changes what follows.
    private mutating func parseAtom() throws -> RegexNode? {
        let scalar = try next()
        switch scalar {
        case "(":
            if pattern[index...].starts(with: ["?", "i", ")"]) {   // (?i): the rest of the group ignores case
                index += 3
                caseInsensitive = true
                return nil
            }
            return try parseGroup()
        case "[": return .set(try parseClass())
        case ".": return .set(ScalarSet([.range(0x0A ... 0x0A)], negated: true))
        case "\\": return .set(ScalarSet(try parseEscape(inClass: false), negated: false))
        case "^", "$": throw error("anchors (\(scalar)) are not supported")
        case "*", "+", "?", "{": throw error("quantifier \(scalar) with nothing to repeat")
        default: return .set(ScalarSet(literal(scalar.value), negated: false))
        }
    }

    private mutating func parseGroup() throws -> RegexNode {
        let saved = caseInsensitive
        defer { caseInsensitive = saved }
        var kind = "("
        if take("?") {
            switch try next() {
            case ":": kind = "(?:"
            case ">": kind = "(?>"
            case "=": kind = "(?="
            case "!": kind = "(?!"
            case "i":
                guard take(":") else { throw error("only the flag group (?i:…) / (?i) is supported") }
                caseInsensitive = true
                kind = "(?:"
            case "<": throw error("lookbehinds and named groups are not supported")
            default: throw error("unsupported group (?\(pattern[index - 1])")
            }
        }
        let inside = try parseAlternation()
        guard take(")") else { throw error("expected ')'") }
        switch kind {
        case "(?>": return .atomic(inside)
        case "(?=": return .lookahead(inside, negated: false)
        case "(?!": return .lookahead(inside, negated: true)
        default: return inside
        }
    }

    private mutating func parseQuantifiers(_ atom: RegexNode) throws -> RegexNode {
        var node = atom
        while let scalar = peek {
            let bounds: (min: Int, max: Int?)
            switch scalar {
            case "?": bounds = (0, 1)
            case "*": bounds = (0, nil)
            case "+": bounds = (1, nil)
            case "{":
                guard let counted = try parseCountedBounds() else { return node }
                bounds = counted
            default: return node
            }
            if scalar != "{" { index += 1 }
            let mode: RegexNode.RepetitionMode = take("?") ? .lazy : take("+") ? .possessive : .greedy
            if bounds.max == nil && node.canBeEmpty { throw error("unbounded repetition of something that can match nothing") }
            node = .repetition(node, min: bounds.min, max: bounds.max, mode: mode)
        }
        return node
    }

    /// `{n}`, `{n,}` or `{n,m}` at the cursor (consumed), or nil when the brace is a literal.
    private mutating func parseCountedBounds() throws -> (min: Int, max: Int?)? {
        let start = index
        index += 1
        func number() -> Int? {
            var digits = ""
            while let s = peek, ("0" ... "9").contains(s) { digits.unicodeScalars.append(s); index += 1 }
            return Int(digits)
        }
        guard let low = number() else { index = start; return nil }
        var high: Int? = low
        if take(",") { high = number() }
        guard take("}") else { index = start; return nil }
        if let high, high < low { throw error("{\(low),\(high)}: the maximum is below the minimum") }
        return (low, high)
    }

    /// A class body after its `[`, through its `]`.
    private mutating func parseClass() throws -> ScalarSet {
        let negated = take("^")
        var items: [ScalarSet.Item] = []
        var first = true
        while true {
            let scalar = try next()
            if scalar == "]" && !first { break }
            first = false
            if scalar == "[" { throw error("nested classes and class operations are not supported") }
            var low: UInt32
            if scalar == "\\" {
                let escaped = try parseEscape(inClass: true)
                guard escaped.count == 1, case .range(let range) = escaped[0], range.lowerBound == range.upperBound else {
                    items += escaped
                    continue
                }
                low = range.lowerBound
            } else {
                low = scalar.value
            }
            if peek == "-", index + 1 < pattern.count, pattern[index + 1] != "]" {
                index += 1
                var high = try next().value
                if high == 0x5C {   // backslash
                    let escaped = try parseEscape(inClass: true)
                    guard escaped.count == 1, case .range(let range) = escaped[0], range.lowerBound == range.upperBound else {
                        throw error("a range must end in one character")
                    }
                    high = range.lowerBound
                }
                guard low <= high else { throw error("range out of order") }
                items.append(.range(low ... high))
                if caseInsensitive { items += caseVariants(of: low ... high) }
            } else {
                items += literal(low)
            }
        }
        return ScalarSet(items, negated: negated)
    }

    /// The items of an escape after its backslash.
    private mutating func parseEscape(inClass: Bool) throws -> [ScalarSet.Item] {
        let scalar = try next()
        switch scalar {
        case "s": return [.classes(ScalarSet.whitespaceBit, excluding: false)]
        case "S": return [.classes(ScalarSet.whitespaceBit, excluding: true)]
        case "d": return [.classes(ScalarSet.digitBits, excluding: false)]
        case "D": return [.classes(ScalarSet.digitBits, excluding: true)]
        case "w": return [.classes(ScalarSet.wordBits, excluding: false)]
        case "W": return [.classes(ScalarSet.wordBits, excluding: true)]
        case "p", "P":
            var name = ""
            if take("{") {
                while let s = peek, s != "}" { name.unicodeScalars.append(s); index += 1 }
                guard take("}") else { throw error("unterminated \\\(scalar){") }
            } else {
                name = String(try next())
            }
            var excluding = scalar == "P"
            if name.hasPrefix("^") { name.removeFirst(); excluding.toggle() }
            guard let bits = ScalarSet.propertyBits(name) else { throw error("unknown property \\\(scalar){\(name)}") }
            return [.classes(bits, excluding: excluding)]
        case "n": return literal(0x0A)
        case "r": return literal(0x0D)
        case "t": return literal(0x09)
        case "f": return literal(0x0C)
        case "v": return literal(0x0B)
        case "a": return literal(0x07)
        case "e": return literal(0x1B)
        case "x":
            if take("{") {
                var hex = ""
                while let s = peek, s != "}" { hex.unicodeScalars.append(s); index += 1 }
                guard take("}"), let value = UInt32(hex, radix: 16) else { throw error("bad \\x{…} escape") }
                return literal(value)
            }
            return literal(try hexDigits(2))
        case "u": return literal(try hexDigits(4))
        case "b" where inClass: return literal(0x08)
        default:
            if scalar.properties.isAlphabetic || ("0" ... "9").contains(scalar) {
                throw error("unsupported escape \\\(scalar)")
            }
            return literal(scalar.value)
        }
    }

    private mutating func hexDigits(_ count: Int) throws -> UInt32 {
        var hex = ""
        for _ in 0 ..< count { hex.unicodeScalars.append(try next()) }
        guard let value = UInt32(hex, radix: 16) else { throw error("bad hexadecimal escape \(hex)") }
        return value
    }

    /// One literal scalar, with its other cases under `(?i)`.
    private func literal(_ value: UInt32) -> [ScalarSet.Item] {
        [.range(value ... value)] + (caseInsensitive ? caseVariants(of: value ... value) : [])
    }

    /// The single-scalar lower, upper and title cases of the scalars of `range` (ASCII letters for
    /// ranges longer than one).
    private func caseVariants(of range: ClosedRange<UInt32>) -> [ScalarSet.Item] {
        var items: [ScalarSet.Item] = []
        for value in range where range.count == 1 || value < 128 {
            guard let scalar = Unicode.Scalar(value) else { continue }
            let properties = scalar.properties
            for mapping in [properties.lowercaseMapping, properties.uppercaseMapping, properties.titlecaseMapping] {
                let scalars = mapping.unicodeScalars
                if scalars.count == 1, let other = scalars.first?.value, other != value { items.append(.range(other ... other)) }
            }
        }
        return items
    }
}
