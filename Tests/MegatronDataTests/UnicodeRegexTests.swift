import MegatronData
import Testing

/// The pattern matcher against Python's `regex` module (leftmost-first backtracking, as Oniguruma
/// and fancy-regex): each case's matches, left to right, as `regex.finditer` gives them.
@Suite struct UnicodeRegexTests {
    @Test(arguments: [
        (#"a+?b|a+"#, "aaab aa", ["aaab", "aa"]),
        (#"(?:ab|a)(?:bc|c)"#, "abc", ["abc"]),
        (#"(a|ab)(c|bcd)(d*)"#, "abcd", ["abcd"]),
        (#"[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}"#, "!!hello 42x", ["!hello", "4", "2", "x"]),
        (#"a?+a"#, "aa a", ["aa"]),
        (#"(?>a+)b|\w+"#, "aaab aaa", ["aaab", "aaa"]),
        (#"\s+(?!\S)|\s+"#, "a   b  \n", ["  ", " ", "  \n"]),
        (#"(?i:'s|'t)|\p{L}+"#, "IT'S it's", ["IT", "'S", "it", "'s"]),
        (#"\p{N}{1,3}"#, "1234567 89", ["123", "456", "7", "89"]),
        (#"x{2,}|z{2}|\."#, "xxx x. zzz", ["xxx", ".", "zz"]),
        (#"a{2,3}?"#, "aaaaa", ["aa", "aa"]),
        (#"(?:a|b)*?c"#, "ababc", ["ababc"]),
        ("[\u{4e00}-\u{9fa5}]+|[^\\s\u{4e00}-\u{9fa5}]+", "中文abc 日本", ["中文", "abc", "日本"]),
        (#"[\p{Lu}\p{Lt}]*[\p{Ll}\p{M}]+"#, "HelloWORLDfoo", ["Hello", "WORLDfoo"]),
        (#"\d+\.?\d*|\w+"#, "pi 3.14 x_1 ٣٤", ["pi", "3.14", "x_1", "٣٤"]),
        (#"[a-c-]+|\."#, "a-b.c--d", ["a-b", ".", "c--"]),
        (#"\x41\u0042C|\t"#, "ABC\tD", ["ABC", "\t"]),
    ])
    func matchesAreRegexModules(pattern: String, text: String, expected: [String]) throws {
        let regex = try UnicodeRegex(pattern)
        let classified = ClassifiedText(text)
        let found = regex.matches(in: classified).map { range in
            String(String.UnicodeScalarView(classified.scalars[range].map { Unicode.Scalar($0)! }))
        }
        #expect(found == expected, "\(pattern) on \(text.debugDescription)")
    }

    @Test(arguments: [
        (#"^a"#, "anchors"), (#"(?<=a)b"#, "lookbehind"), (#"\p{Greek}"#, "unknown property"), (#"*a"#, "nothing to repeat"),
        (#"(a"#, "expected ')'"), (#"a)"#, "unbalanced"), (#"(?:)*"#, "can match nothing"), (#"\1"#, "unsupported escape"),
    ])
    func unsupportedSyntaxIsAnErrorNamingIt(pattern: String, message: String) {
        let error = #expect(throws: TokenizerError.self) { try UnicodeRegex(pattern) }
        #expect(error?.description.contains(message) == true, "\(pattern): \(error?.description ?? "no error")")
    }
}
