import Foundation
import MegatronData
import Testing

/// TikTokenizer against tiktoken with megatron.core's TikTokenTokenizer rules (expected.json).
@Suite struct TikTokenizerTests {
    func check(_ entry: TokenizerFixtures.Entry) throws {
        let tokenizer = try TikTokenizer(
            file: entry.path.path, pattern: TikTokenizer.Pattern(rawValue: entry.fields["pattern"] as! String)!,
            vocabSize: Int(entry.int("vocab_size")!), numSpecialTokens: Int(entry.int("num_special_tokens")!),
            specialTokens: entry.fields["special_tokens"] as? [String])
        #expect(tokenizer.vocabSize == Int(entry.int("vocab_size")!))
        #expect([tokenizer.bos, tokenizer.eos, tokenizer.eod, tokenizer.unk, tokenizer.pad]
                == [entry.int("bos"), entry.int("eos"), entry.int("eos"), entry.int("unk"), entry.int("pad")].map { $0! })
        for testCase in entry.cases {
            let text = testCase["text"] as! String
            let expected = TokenizerFixtures.ids(testCase["ids"])
            #expect(tokenizer.encode(text) == expected, "\(entry.name): ids of \(text.debugDescription)")
            let ordinary = testCase["ids_ordinary"].map(TokenizerFixtures.ids) ?? expected
            #expect(tokenizer.encode(text, allowSpecialTokens: false) == ordinary, "\(entry.name): ordinary ids of \(text.debugDescription)")
            #expect(tokenizer.decode(expected) == testCase["decoded"] as? String ?? text, "\(entry.name): decode of \(text.debugDescription)")
        }
        for testCase in entry.decodeCases {
            let ids = TokenizerFixtures.ids(testCase["ids"])
            #expect(tokenizer.decode(ids) == testCase["text"] as! String, "\(entry.name): decode of \(ids) (cut characters)")
        }
    }

    @Test(arguments: TokenizerFixtures.names(kind: "tiktoken", committed: true))
    func committedVocabularyMatchesTiktoken(name: String) throws {
        try check(TokenizerFixtures.entry(name))
    }

    /// Mistral's tekken_240718.json (131072 tokens) staged under data/tokenizers; skipped when absent.
    @Test(arguments: TokenizerFixtures.names(kind: "tiktoken", committed: false))
    func realVocabularyMatchesTiktoken(name: String) throws {
        if let entry = TokenizerFixtures.stagedEntry(name) { try check(entry) }
    }

    @Test func badSettingsAreRefused() throws {
        let file = TokenizerFixtures.directory.appendingPathComponent("tiktoken_tiny.json").path
        #expect(throws: TokenizerError.self) { try TikTokenizer(file: file, pattern: .v2, vocabSize: 1928, specialTokens: ["<s>", "</s>"]) }
        #expect(throws: TokenizerError.self) { try TikTokenizer(file: file, pattern: .v2, vocabSize: 5000) }      // more than the file holds
        #expect(throws: TokenizerError.self) { try TikTokenizer(file: file, pattern: .v2, vocabSize: 1100) }      // < 256 ranks
        #expect(throws: TokenizerError.self) { try TikTokenizer(file: "/nonexistent.json", pattern: .v2) }
    }
}
