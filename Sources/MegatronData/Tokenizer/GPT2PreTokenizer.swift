/// GPT-2's pre-tokenisation: the text is cut into pieces by the pattern
///
///     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
///
/// (leftmost match, first alternative that matches), written out by hand over Unicode scalars:
/// \p{L} letters, \p{N} numbers, \s the Unicode White_Space property. BPE then runs inside each piece.
enum GPT2PreTokenizer {
    enum Class { case letter, number, space, other }

    static func classify(_ s: Unicode.Scalar) -> Class {
        if s.isASCII {
            let v = s.value
            if (v >= 0x61 && v <= 0x7A) || (v >= 0x41 && v <= 0x5A) { return .letter }
            if v >= 0x30 && v <= 0x39 { return .number }
            return v == 0x20 || (v >= 0x09 && v <= 0x0D) ? .space : .other
        }
        if s.properties.isWhitespace { return .space }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    /// The pieces of `scalars` as index ranges, in order, covering it exactly.
    static func pieces(_ scalars: [Unicode.Scalar]) -> [Range<Int>] {
        let classes = scalars.map(classify)
        let n = scalars.count
        var result: [Range<Int>] = []
        var i = 0
        /// End of the run of `c` starting at `start`.
        func run(_ c: Class, from start: Int) -> Int {
            var j = start
            while j < n && classes[j] == c { j += 1 }
            return j
        }
        while i < n {
            // Contractions: 's 't 're 've 'm 'll 'd (lower case, ASCII apostrophe).
            if scalars[i] == "'" && i + 1 < n {
                let next = scalars[i + 1]
                if next == "s" || next == "t" || next == "m" || next == "d" {
                    result.append(i ..< i + 2); i += 2; continue
                }
                if i + 2 < n {
                    let pair = (next, scalars[i + 2])
                    if pair == ("r", "e") || pair == ("v", "e") || pair == ("l", "l") {
                        result.append(i ..< i + 3); i += 3; continue
                    }
                }
            }
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
            let start = i
            let body = scalars[i] == " " && i + 1 < n && classes[i + 1] != .space ? i + 1 : i
            let c = classes[body]
            if c != .space {
                let end = run(c, from: body)
                result.append(start ..< end)
                i = end
                continue
            }
            // `\s+(?!\S)` then `\s+`: a whitespace run, leaving its last scalar to the next piece when a
            // non-space follows and the run is longer than one.
            let end = run(.space, from: i)
            if end < n && end - i > 1 {
                result.append(i ..< end - 1)
                i = end - 1
            } else {
                result.append(i ..< end)
                i = end
            }
        }
        return result
    }
}
