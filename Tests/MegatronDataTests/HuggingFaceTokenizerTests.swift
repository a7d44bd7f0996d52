import Foundation
import MegatronData
import Testing

/// Tests/Fixtures/tokenizers/expected.json, written by Tests/Fixtures/make_tokenizer_fixtures.py
/// with the `tokenizers`, `transformers` and `tiktoken` libraries: for each tokenizer (the tiny
/// committed ones, and the real ones that script stages under data/tokenizers), test texts with
/// their reference ids and decodings.
struct TokenizerFixtures {
    /// Read-only after loading, so sharing it between tests is safe.
    struct Entry: @unchecked Sendable {
        let name: String
        let kind: String
        let path: URL
        let committed: Bool
        let fields: [String: Any]
        var cases: [[String: Any]] { fields["cases"] as? [[String: Any]] ?? [] }
        var decodeCases: [[String: Any]] { fields["decode_cases"] as? [[String: Any]] ?? [] }
        func int(_ key: String) -> Int32? { (fields[key] as? Int).map(Int32.init) }
    }

    static let directory = repository.appendingPathComponent("Tests/Fixtures/tokenizers")

    static let entries: [Entry] = {
        let data = try! Data(contentsOf: directory.appendingPathComponent("expected.json"))
        let json = try! JSONSerialization.jsonObject(with: data) as! [String: Any]
        return (json["tokenizers"] as! [[String: Any]]).map { entry in
            Entry(name: entry["name"] as! String, kind: entry["kind"] as! String,
                  path: repository.appendingPathComponent(entry["path"] as! String),
                  committed: entry["committed"] as! Bool, fields: entry)
        }
    }()

    static func names(kind: String, committed: Bool) -> [String] {
        entries.filter { $0.kind == kind && $0.committed == committed }.map(\.name)
    }

    static func entry(_ name: String) -> Entry { entries.first { $0.name == name }! }

    /// A real tokenizer's entry when make_tokenizer_fixtures.py --stage-only has staged its file
    /// under data/tokenizers; nil (saying so) when not.
    static func stagedEntry(_ name: String) -> Entry? {
        let entry = entry(name)
        guard FileManager.default.fileExists(atPath: entry.path.path) else {
            print("skipped: \(entry.path.path) is absent (python3 Tests/Fixtures/make_tokenizer_fixtures.py --stage-only stages it)")
            return nil
        }
        return entry
    }

    static func ids(_ value: Any?) -> [Int32] { (value as? [Int] ?? []).map(Int32.init) }
}

@Suite struct HuggingFaceTokenizerTests {
    /// Every test text: the ids of `AutoTokenizer(text).input_ids`, and decode with and without
    /// special tokens.
    func check(_ entry: TokenizerFixtures.Entry) throws {
        let tokenizer = try HuggingFaceTokenizer(path: entry.path.path, requireEndOfDocument: false)
        #expect(tokenizer.vocabSize == Int(entry.int("vocab_size") ?? -1), "\(entry.name): vocab size")
        #expect(tokenizer.bos == entry.int("bos"), "\(entry.name): bos")
        #expect(tokenizer.eos == entry.int("eos"), "\(entry.name): eos")
        let adds = entry.fields["post_processor_adds"] as! [String: Any]
        let text = "Hello"
        #expect(try tokenizer.encode(text) == TokenizerFixtures.ids(adds["prefix"]) + tokenizer.encode(text, addSpecialTokens: false)
                + TokenizerFixtures.ids(adds["suffix"]), "\(entry.name): the post-processor's special tokens")
        for testCase in entry.cases {
            let text = testCase["text"] as! String
            let expected = TokenizerFixtures.ids(testCase["ids"])
            let ids = try tokenizer.encode(text)
            #expect(ids == expected, "\(entry.name): ids of \(text.debugDescription)")
            let decoded = testCase["decoded"] as? String ?? text
            #expect(tokenizer.decode(expected) == decoded, "\(entry.name): decode of \(text.debugDescription)")
            let skipped = testCase["decoded_skip_special"] as? String ?? text
            #expect(tokenizer.decode(expected, skipSpecialTokens: true) == skipped, "\(entry.name): decode without specials of \(text.debugDescription)")
        }
        for testCase in entry.decodeCases {
            let ids = TokenizerFixtures.ids(testCase["ids"])
            #expect(tokenizer.decode(ids) == testCase["text"] as! String, "\(entry.name): decode of \(ids) (cut characters)")
        }
    }

    @Test(arguments: TokenizerFixtures.names(kind: "huggingface", committed: true))
    func committedTokenizerMatchesTheLibraries(name: String) throws {
        try check(TokenizerFixtures.entry(name))
    }

    /// The real tokenizer.json files (Llama-3, DeepSeek-V3, Mistral, Anthropic's) that
    /// `make_tokenizer_fixtures.py --stage-only` puts under data/tokenizers; skipped when absent.
    @Test(arguments: TokenizerFixtures.names(kind: "huggingface", committed: false))
    func realTokenizerMatchesTheLibraries(name: String) throws {
        if let entry = TokenizerFixtures.stagedEntry(name) { try check(entry) }
    }

    /// --tokenizer-hf-no-include-special-tokens: no template ids (Llama-3's <|begin_of_text|>), and
    /// detokenize drops the special tokens tokenizer_config.json names, keeping the others.
    @Test func withoutSpecialTokensTheTemplateAndNamedSpecialsAreLeftOut() throws {
        let folder = TokenizerFixtures.directory.appendingPathComponent("llama3_split").path
        let with = try HuggingFaceTokenizer(path: folder)
        let without = try HuggingFaceTokenizer(path: folder, includeSpecialTokens: false)
        let text = "<|start_header_id|>Hello world<|end_of_text|>"
        let ids = try with.encode(text)
        #expect(ids.first == with.bos && ids.count > 2)
        #expect(try without.encode(text) == Array(ids.dropFirst()))
        #expect(with.decode(ids) == "<|begin_of_text|>" + text)
        #expect(without.decode(ids) == "<|start_header_id|>Hello world")
    }

    @Test func aTokenizerWithoutEndOfDocumentIsRefusedForMegatron() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("hf-tokenizer-no-eos-\(getpid())")
        try? FileManager.default.removeItem(at: folder)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = TokenizerFixtures.directory.appendingPathComponent("gpt2_bytelevel/tokenizer.json")
        try FileManager.default.copyItem(at: source, to: folder.appendingPathComponent("tokenizer.json"))
        #expect(throws: TokenizerError.self) { try HuggingFaceTokenizer(path: folder.path) }
        #expect(try HuggingFaceTokenizer(path: folder.path, requireEndOfDocument: false).eos == nil)
    }

    @Test func unsupportedComponentsAreRefusedByName() throws {
        let base = try JSONSerialization.jsonObject(with: Data(contentsOf: TokenizerFixtures.directory
            .appendingPathComponent("gpt2_bytelevel/tokenizer.json"))) as! [String: Any]
        let cases: [(String, Any, String)] = [
            ("normalizer", ["type": "Precompiled", "precompiled_charsmap": "x"], "Precompiled"),
            ("pre_tokenizer", ["type": "Split", "pattern": ["Regex": "(?<=a)b"], "behavior": "Isolated", "invert": false], "lookbehind"),
            ("pre_tokenizer", ["type": "Split", "pattern": ["Regex": "\\p{Greek}"], "behavior": "Isolated", "invert": false], "Greek"),
            ("model", ["type": "Unigram", "vocab": []], "Unigram"),
            ("decoder", ["type": "CTC"], "CTC"),
        ]
        for (key, value, named) in cases {
            var json = base
            json[key] = value
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("hf-tokenizer-bad-\(getpid())")
            try? FileManager.default.removeItem(at: folder)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            try JSONSerialization.data(withJSONObject: json).write(to: folder.appendingPathComponent("tokenizer.json"))
            let error = #expect(throws: TokenizerError.self) { try HuggingFaceTokenizer(path: folder.path, requireEndOfDocument: false) }
            #expect(error?.description.contains(named) == true && error?.description.contains(key) == true,
                    "\(error?.description ?? "no error") should name \(key) and \(named)")
        }
    }
}
