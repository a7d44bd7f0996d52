import Foundation
import MegatronData
import Testing

/// `megatron preprocess-data --split-sentences`, BERT's data path end to end: JSON lines split by
/// the Punkt model on NLTK's data path (NLTK_DATA: the committed Tests/Fixtures/punkt model) into
/// one sequence per sentence under PREFIX_text_sentence, which `megatron pretrain-bert` trains on.
@Suite struct SplitSentencesTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    /// `megatron arguments` with $NLTK_DATA set to `nltkData`.
    static func megatron(_ arguments: [String], nltkData: String) throws -> (status: Int32, output: String) {
        try PretrainFlagTests.megatron(arguments, environment: ["NLTK_DATA": nltkData])
    }

    @Test func sentencesBecomeSequencesThatPretrainBertTrainsOn() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("split-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // 30 documents of 3 to 5 sentences of words of the BERT fixture's vocabulary ("wN", "##sN").
        var generator = SystemRandomNumberGenerator()
        var lines: [String] = [], sentencesPerDocument: [Int] = []
        for _ in 0 ..< 30 {
            let count = Int.random(in: 3 ... 5, using: &generator)
            sentencesPerDocument.append(count)
            let sentences = (0 ..< count).map { _ in
                "W" + (0 ..< Int.random(in: 2 ... 8, using: &generator)).map { _ in "\(Int.random(in: 0 ..< 60, using: &generator))" }
                    .joined(separator: " w") + [".", "!", "?"].randomElement(using: &generator)!
            }
            lines.append(#"{"text": "\#(sentences.joined(separator: " "))"}"#)
        }
        let input = dir.appendingPathComponent("input.jsonl")
        try (lines.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
        let prefix = dir.appendingPathComponent("corpus").path, vocab = Self.fixtures.appendingPathComponent("bert_dataset/vocab.txt").path
        let nltk = Self.fixtures.appendingPathComponent("punkt").path
        let preprocess = try Self.megatron(["preprocess-data", "--input", input.path, "--output-prefix", prefix, "--split-sentences",
                                            "--tokenizer-type", "BertWordPieceLowerCase", "--vocab-file", vocab, "--workers", "2"],
                                           nltkData: nltk)
        #expect(preprocess.status == 0 && preprocess.output.contains("corpus_text_sentence.{bin,idx}"), "\(preprocess.output)")
        let dataset = try IndexedDataset(prefix: prefix + "_text_sentence")
        #expect(dataset.documentCount == 30)
        #expect(zip(dataset.documentIndices, dataset.documentIndices.dropFirst()).map { Int($1 - $0) } == sentencesPerDocument)
        // Each sentence: its words, then the end mark ([UNK]: not in the vocabulary).
        #expect((0 ..< dataset.sequenceCount).allSatisfy { dataset.sequence($0).last == 1 && dataset.sequence($0).dropLast().allSatisfy { $0 >= 5 } })

        let train = try Self.megatron(PretrainBertTests.run.map { $0 == PretrainBertTests.fixtures.appendingPathComponent("corpus").path
                                                                  ? prefix + "_text_sentence" : $0 } + ["--train-iters", "2"],
                                      nltkData: nltk)
        #expect(train.status == 0 && PretrainModelParallelTests.values("sop loss", in: train.output).count == 2, "\(train.output)")
    }

    @Test func withoutAModelTheErrorSaysHowToInstallIt() throws {
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("split-\(UUID().uuidString).jsonl")
        try #"{"text": "One. Two."}"#.write(to: input, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: input) }
        let result = try Self.megatron(["preprocess-data", "--input", input.path, "--output-prefix", input.path + ".out", "--split-sentences",
                                        "--tokenizer-type", "NullTokenizer", "--vocab-size", "10", "--lang", "klingon"],
                                       nltkData: Self.fixtures.appendingPathComponent("punkt").path)
        #expect(result.status != 0 && result.output.contains("punkt_tab/klingon") && result.output.contains("nltk.downloader"), "\(result.output)")
    }
}
