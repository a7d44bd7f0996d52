import Foundation
import MegatronData
import Testing

/// BertWordPieceTokenizer against Tests/Fixtures/wordpiece/expected.json: the ids, detokenize and
/// decode_token_ids of Megatron's own bert_tokenization.py and _BertWordPieceTokenizer, as
/// Tests/Fixtures/make_wordpiece_fixtures.py ran them (tiny committed vocabularies; BERT's real
/// uncased one when staged under data/tokenizers).
@Suite struct BertWordPieceTokenizerTests {
    /// Read-only after loading.
    struct Vocab: @unchecked Sendable {
        let fields: [String: Any]
        var name: String { fields["name"] as! String }
        var path: URL { repository.appendingPathComponent(fields["path"] as! String) }
        func int(_ key: String, in group: String? = nil) -> Int32 {
            let source = group.map { fields[$0] as! [String: Any] } ?? fields
            return Int32(source[key] as! Int)
        }
    }

    static let vocabs: [Vocab] = {
        let file = repository.appendingPathComponent("Tests/Fixtures/wordpiece/expected.json")
        let json = try! JSONSerialization.jsonObject(with: Data(contentsOf: file)) as! [String: Any]
        return (json["vocabs"] as! [[String: Any]]).map(Vocab.init)
    }()

    static func names(committed: Bool) -> [String] { vocabs.filter { $0.fields["committed"] as! Bool == committed }.map(\.name) }

    func check(_ vocab: Vocab) throws {
        let lowerCase = vocab.fields["lower_case"] as! Bool
        let tokenizer = try BertWordPieceTokenizer(vocabFile: vocab.path.path, lowerCase: lowerCase)
        #expect(tokenizer.vocabSize == Int(vocab.int("vocab_size", in: "legacy")))
        #expect([tokenizer.cls, tokenizer.sep, tokenizer.pad, tokenizer.mask, tokenizer.unk]
                == [vocab.int("cls"), vocab.int("sep"), vocab.int("pad"), vocab.int("mask"), vocab.int("unk")])
        #expect([tokenizer.bos, tokenizer.eos, tokenizer.eod] == [vocab.int("bos", in: "legacy"), vocab.int("eos", in: "legacy"), vocab.int("eod", in: "legacy")])
        let withExtras = try BertWordPieceTokenizer(vocabFile: vocab.path.path, lowerCase: lowerCase, extraIDs: 100)
        #expect(withExtras.vocabSize == Int(vocab.int("vocab_size_extra_ids_100", in: "legacy")))
        #expect(withExtras.extraIDs.first == vocab.int("extra_id_0", in: "legacy"))
        for testCase in vocab.fields["cases"] as! [[String: Any]] {
            let text = testCase["text"] as! String
            let expected = (testCase["ids"] as! [Int]).map(Int32.init)
            #expect(tokenizer.encode(text) == expected, "\(vocab.name): ids of \(text.debugDescription)")
            #expect(tokenizer.decode(expected) == testCase["detokenize"] as! String, "\(vocab.name): detokenize of \(text.debugDescription)")
            #expect(tokenizer.decodeTokenIDs(expected) == testCase["decode_token_ids"] as! String, "\(vocab.name): decode_token_ids of \(text.debugDescription)")
        }
        for testCase in vocab.fields["decode_cases"] as? [[String: Any]] ?? [] {
            let ids = (testCase["ids"] as! [Int]).map(Int32.init)
            #expect(tokenizer.decode(ids) == testCase["detokenize"] as! String, "\(vocab.name): detokenize of \(ids)")
            #expect(tokenizer.decodeTokenIDs(ids) == testCase["decode_token_ids"] as! String, "\(vocab.name): decode_token_ids of \(ids)")
        }
    }

    @Test(arguments: names(committed: true))
    func committedVocabularyMatchesMegatron(name: String) throws {
        try check(Self.vocabs.first { $0.name == name }!)
    }

    @Test(arguments: names(committed: false))
    func realVocabularyMatchesMegatron(name: String) throws {
        let vocab = Self.vocabs.first { $0.name == name }!
        guard FileManager.default.fileExists(atPath: vocab.path.path) else {
            print("skipped: \(vocab.path.path) is absent (python3 Tests/Fixtures/make_wordpiece_fixtures.py --stage-only stages it)")
            return
        }
        try check(vocab)
    }
}
