/// Python's text rules that Megatron's tokenizers and NLTK's sentence splitter rely on, where
/// Swift's differ.
enum PythonText {
    /// `str.isspace`: White_Space, plus the information separators U+001C … U+001F.
    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isWhitespace || (0x1C ... 0x1F).contains(scalar.value)
    }

    /// `str.lower()`: each scalar's full lowercase mapping, except that Σ at the end of a word
    /// (after a cased letter, before none, case-ignorable scalars skipped) is final ς.
    static func lowercased(_ word: String.UnicodeScalarView) -> String.UnicodeScalarView {
        let scalars = Array(word)
        var out = String.UnicodeScalarView()
        for (i, scalar) in scalars.enumerated() {
            if scalar.value == 0x03A3 {
                let before = scalars[..<i].reversed().first { !$0.properties.isCaseIgnorable }
                let after = scalars[(i + 1)...].first { !$0.properties.isCaseIgnorable }
                if before?.properties.isCased == true && after?.properties.isCased != true {
                    out.append("\u{03C2}")
                    continue
                }
            }
            for lower in scalar.properties.lowercaseMapping.unicodeScalars { out.append(lower) }
        }
        return out
    }
}

extension Substring.UnicodeScalarView {
    /// Without leading and trailing Python white space (`str.strip()`).
    func trimmingPythonWhitespace() -> Substring.UnicodeScalarView {
        var view = self
        while let first = view.first, PythonText.isWhitespace(first) { view.removeFirst() }
        while let last = view.last, PythonText.isWhitespace(last) { view.removeLast() }
        return view
    }
}
