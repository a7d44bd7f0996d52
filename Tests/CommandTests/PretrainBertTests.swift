import Foundation
import Testing

/// `megatron pretrain-bert` on the committed sentence-split corpus (Tests/Fixtures/bert_dataset):
/// it logs lm loss and sop loss, evaluates both, trains on TP 2 × DP 2 (sequence parallel,
/// distributed optimizer) as on one rank, recomputes and runs in bf16, resumes from its checkpoint,
/// and refuses what BERT does not support here with the flag at fault.
@Suite struct PretrainBertTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/bert_dataset")
    static let run = ["pretrain-bert", "--num-layers", "2", "--hidden-size", "32", "--num-attention-heads", "4", "--seq-length", "32",
                      "--max-position-embeddings", "32", "--micro-batch-size", "2", "--global-batch-size", "8", "--train-iters", "6",
                      "--lr", "1e-3", "--log-interval", "1", "--eval-iters", "1", "--split", "90,10,0",
                      "--data-path", fixtures.appendingPathComponent("corpus").path, "--tokenizer-type", "BertWordPieceLowerCase",
                      "--vocab-file", fixtures.appendingPathComponent("vocab.txt").path, "--make-vocab-size-divisible-by", "32"]

    @Test func logsBothLossesAndTrainsOnTensorAndDataParallelRanksAsOnOne() throws {
        let single = try PretrainFlagTests.megatron(Self.run)
        #expect(single.status == 0 && single.output.contains("> building BERT model"), "\(single.output)")
        #expect(single.output.contains("validation loss at iteration 6 on validation set | lm loss value:") && single.output.contains("sop loss PPL:"),
                "\(single.output)")
        let parallel = try PretrainFlagTests.megatron(Self.run + ["--in-process-ranks", "4", "--tensor-model-parallel-size", "2",
                                                                  "--sequence-parallel", "--use-distributed-optimizer"])
        #expect(parallel.status == 0 && parallel.output.contains("tensor-parallel size 2 (sequence parallel)"), "\(parallel.output)")
        PretrainRunChecks.expectSame(["lm loss", "sop loss", "grad norm"], single.output, parallel.output, iterations: 6, tolerance: 1e-4,
                                     "TP 2 × DP 2")
    }

    /// Recomputation (full, uniform and block, and selective) and bf16 leave one rank's run as it was
    /// (recomputation: exactly), and bf16 on TP 2 logs what bf16 on one rank logs.
    @Test func recomputationAndMixedPrecisionWork() throws {
        try PretrainRunChecks.expectRecomputationLeavesTheRunUnchanged(Self.run, fields: ["lm loss", "sop loss", "grad norm"], iterations: 6)
        try PretrainRunChecks.expectBF16TrainsAsOneRank(Self.run, losses: ["lm loss", "sop loss"], iterations: 6)
    }

    @Test func withoutTheBinaryHeadOnlyTheLMLossIsLogged() throws {
        let result = try PretrainFlagTests.megatron(Self.run + ["--bert-no-binary-head"])
        #expect(result.status == 0 && !PretrainRunChecks.values("lm loss", in: result.output).isEmpty && !result.output.contains("sop loss"),
                "\(result.output)")
    }

    @Test func aCheckpointResumesTheRun() throws { try PretrainRunChecks.expectCheckpointResumes(Self.run) }

    @Test func whatBERTLacksHereIsRefusedByItsFlag() throws {
        for (flags, flag) in [(["--pipeline-model-parallel-size", "2", "--in-process-ranks", "2"], "--pipeline-model-parallel-size"),
                              (["--mask-prob", "1.5"], "--mask-prob"),
                              (["--position-embedding-type", "rope"], "--position-embedding-type"),
                              (["--tokenizer-type", "NullTokenizer", "--vocab-size", "97"], "--tokenizer-type")] {
            let result = try PretrainFlagTests.megatron(Self.run + flags)
            #expect(result.status != 0 && result.output.contains(flag), "\(flags): \(result.output)")
        }
    }
}
