import Foundation
import Testing

/// Translation end to end on a toy parallel corpus (each target the source's words reversed, in the
/// BERT fixture's vocabulary): `preprocess-data-nmt` on both sides, `pretrain-t5 --translation`
/// trains and saves, and `megatron translate` writes a translation per input line from the checkpoint.
@Suite struct TranslationTests {
    @Test func preprocessTrainAndTranslate() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("translation-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var generator = SystemRandomNumberGenerator()
        var sources: [String] = [], targets: [String] = []
        for _ in 0 ..< 200 {
            let words = (0 ..< Int.random(in: 2 ... 6, using: &generator)).map { _ in "w\(Int.random(in: 0 ..< 60, using: &generator))" }
            sources.append(words.joined(separator: " "))
            targets.append(words.reversed().joined(separator: " "))
        }
        let vocab = PretrainBertTests.fixtures.appendingPathComponent("vocab.txt").path
        let tokenizer = ["--tokenizer-type", "BertWordPieceLowerCase", "--vocab-file", vocab]
        for (side, lines) in [("src", sources), ("tgt", targets)] {
            let file = dir.appendingPathComponent("train.\(side)")
            try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
            let run = try PretrainFlagTests.megatron(["preprocess-data-nmt", "--input", file.path, "--output-prefix",
                                                      dir.appendingPathComponent(side).path] + tokenizer)
            #expect(run.status == 0 && run.output.contains("200 sentences"), "\(run.output)")
        }
        let checkpoint = dir.appendingPathComponent("checkpoint").path
        let train = try PretrainFlagTests.megatron(
            ["pretrain-t5", "--translation", "--data-path", dir.appendingPathComponent("src").path, dir.appendingPathComponent("tgt").path,
             "--encoder-num-layers", "1", "--decoder-num-layers", "1", "--hidden-size", "32", "--num-attention-heads", "4",
             "--encoder-seq-length", "8", "--decoder-seq-length", "8", "--max-position-embeddings", "8", "--micro-batch-size", "4",
             "--global-batch-size", "8", "--train-iters", "4", "--lr", "1e-3", "--log-interval", "1", "--eval-iters", "1",
             "--split", "90,10,0", "--position-embedding-type", "relative", "--save", checkpoint] + tokenizer)
        #expect(train.status == 0 && train.output.contains("translation data") && PretrainModelParallelTests.values("lm loss", in: train.output).count == 4,
                "\(train.output)")
        let input = dir.appendingPathComponent("test.src"), output = dir.appendingPathComponent("test.hyp")
        try (sources.prefix(5).joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
        let translate = try PretrainFlagTests.megatron(["translate", "--load", checkpoint, "--input", input.path, "--output", output.path,
                                                        "--max-new-tokens", "6"] + tokenizer)
        #expect(translate.status == 0, "\(translate.output)")
        let hypotheses = try String(contentsOf: output, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(hypotheses.count == 5, "\(hypotheses)")
    }
}
