import Foundation
import MegatronData
import Testing

/// The repository root, from this file's path.
let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// GPT-2's vocabulary and merges as scripts/setup.sh installs them under data/gpt2.
func gpt2Tokenizer() throws -> GPT2BPETokenizer {
    let dir = repository.appendingPathComponent("data/gpt2")
    guard FileManager.default.fileExists(atPath: dir.appendingPathComponent("gpt2-vocab.json").path) else {
        throw TokenizerError("no GPT-2 vocabulary in \(dir.path): run scripts/setup.sh")
    }
    return try GPT2BPETokenizer(vocabFile: dir.appendingPathComponent("gpt2-vocab.json"),
                                mergesFile: dir.appendingPathComponent("gpt2-merges.txt"))
}

/// ../shared/data/golden beside the checkout, present only on the team's machines.
let golden = repository.deletingLastPathComponent().appendingPathComponent("shared/data/golden")

@Suite struct GPT2BPETokenizerTests {
    let tokenizer: GPT2BPETokenizer

    init() throws { tokenizer = try gpt2Tokenizer() }

    @Test func knownIds() {
        #expect(tokenizer.eod == 50256 && tokenizer.vocabSize == 50257)
        #expect(tokenizer.encode("Hello world") == [15496, 995])
        #expect(tokenizer.encode("") == [])
        #expect(tokenizer.decode([15496, 995]) == "Hello world")
        // "<|endoftext|>" inside a document is text, not the end-of-document token.
        #expect(!tokenizer.encode("a<|endoftext|>b").contains(50256))
    }

    /// Every case of the golden edge-case file (tiktoken's ids): empty strings, whitespace runs,
    /// contractions, CJK, emoji, control characters, ….
    @Test func goldenEdgeCases() throws {
        let file = golden.appendingPathComponent("gpt2_edge_cases.json")
        guard let data = try? Data(contentsOf: file) else {
            print("skipped: \(file.path) is absent (it exists only on the team's machines)")
            return
        }
        // Each case has "ids", or (text holding a special token) "ids_ordinary": the text encoded as
        // ordinary text, which is what Megatron's GPT-2 tokenizer does.
        struct Case: Decodable { let text: String; let ids: [Int32]?; let ids_ordinary: [Int32]? }
        let cases = try JSONDecoder().decode([Case].self, from: data)
        #expect(cases.count > 30)
        for c in cases {
            let ids = c.ids ?? c.ids_ordinary ?? []
            #expect(tokenizer.encode(c.text) == ids, "\(c.text.debugDescription)")
            #expect(tokenizer.decode(ids) == c.text)
        }
    }

    /// Whole corpora against tiktoken's ids (opt-in: the files are on the team's machines only).
    @Test(arguments: ["shakespeare", "austen", "linux_docs"])
    func goldenCorpus(name: String) throws {
        let corpus = golden.deletingLastPathComponent().appendingPathComponent("corpora/\(name).txt")
        guard let text = try? String(contentsOf: corpus, encoding: .utf8),
              let ids = try? Data(contentsOf: golden.appendingPathComponent("\(name).gpt2.u16")) else {
            print("skipped: \(name) corpus or golden ids absent (they exist only on the team's machines)")
            return
        }
        let expected = ids.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }.map { Int32($0) }
        let ours = tokenizer.encode(text)
        #expect(ours.count == expected.count)
        let firstDifference = zip(ours, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(firstDifference == nil, "\(name): first difference at token \(firstDifference ?? -1)")
    }

    /// decode(encode(x)) == x for random valid UTF-8 mixing ASCII, whitespace, letters of several
    /// scripts, digits, punctuation, combining marks and emoji.
    @Test func roundTripOfRandomText() {
        let alphabet: [Unicode.Scalar] = Array("ab Z09 \t\n\r'’.,!?-_".unicodeScalars)
            + [0xE9, 0x301, 0x4E2D, 0x6587, 0x0416, 0x0627, 0x1F44D, 0x1F3FD, 0x200D, 0xA0, 0x3000, 0x2028, 0x0, 0x7F, 0xFB01, 0x1D518]
                .compactMap(Unicode.Scalar.init)
        var state: UInt64 = 12345
        for _ in 0 ..< 300 {
            var text = String.UnicodeScalarView()
            for _ in 0 ..< Int(state % 40) {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                text.append(alphabet[Int(state >> 33) % alphabet.count])
            }
            state = state &* 6_364_136_223_846_793_005 &+ 1
            let s = String(text)
            #expect(tokenizer.decode(tokenizer.encode(s)) == s, "\(s.debugDescription)")
        }
    }

    @Test func malformedMergesNameTheLine() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("merges-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let merges = dir.appendingPathComponent("merges.txt")
        try "#version: 0.2\nĠ t\nthis line is bad\n".write(to: merges, atomically: true, encoding: .utf8)
        #expect {
            try GPT2BPETokenizer(vocabFile: repository.appendingPathComponent("data/gpt2/gpt2-vocab.json"), mergesFile: merges)
        } throws: { "\($0)".hasSuffix("merges.txt:3: expected two vocabulary tokens whose join is one, got \"this line is bad\"") }
    }

    @Test func aMissingFileIsNamed() {
        #expect {
            try GPT2BPETokenizer(vocabFile: URL(fileURLWithPath: "/nonexistent/vocab.json"), mergesFile: URL(fileURLWithPath: "/nonexistent/merges.txt"))
        } throws: { "\($0)".hasPrefix("/nonexistent/vocab.json: cannot read it (") }
    }
}
