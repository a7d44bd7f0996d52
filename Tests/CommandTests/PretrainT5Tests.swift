import Foundation
import Testing

/// `megatron pretrain-t5` on the committed sentence-split corpus (Tests/Fixtures/bert_dataset): it
/// logs lm loss and evaluates it, with learned or relative positions; trains on TP 2 × DP 2 (with
/// the distributed optimizer) as on one rank, recomputes and runs in bf16; resumes from its
/// checkpoint; and refuses what T5 does not support here with the flag at fault.
@Suite struct PretrainT5Tests {
    static let fixtures = PretrainBertTests.fixtures
    static let run = ["pretrain-t5", "--encoder-num-layers", "2", "--decoder-num-layers", "1", "--hidden-size", "32",
                      "--num-attention-heads", "4", "--encoder-seq-length", "32", "--decoder-seq-length", "16",
                      "--max-position-embeddings", "32", "--micro-batch-size", "2", "--global-batch-size", "8", "--train-iters", "6",
                      "--lr", "1e-3", "--log-interval", "1", "--eval-iters", "1", "--split", "90,10,0",
                      "--data-path", fixtures.appendingPathComponent("corpus").path, "--tokenizer-type", "BertWordPieceLowerCase",
                      "--vocab-file", fixtures.appendingPathComponent("vocab.txt").path, "--vocab-extra-ids", "100",
                      "--make-vocab-size-divisible-by", "128"]  // 199 ids: 256 rows on one rank and on two

    @Test(arguments: [[], ["--position-embedding-type", "relative", "--relative-attention-num-buckets", "8",
                           "--relative-attention-max-distance", "16"]])
    func trainsOnTensorAndDataParallelRanksAsOnOne(positions: [String]) throws {
        let single = try PretrainFlagTests.megatron(Self.run + positions)
        #expect(single.status == 0 && single.output.contains("> building T5 model")
                && single.output.contains("validation loss at iteration 6 on validation set | lm loss value:"), "\(single.output)")
        let parallel = try PretrainFlagTests.megatron(Self.run + positions + ["--in-process-ranks", "4", "--tensor-model-parallel-size", "2",
                                                                              "--use-distributed-optimizer"])
        #expect(parallel.status == 0, "\(parallel.output)")
        PretrainRunChecks.expectSame(["lm loss", "grad norm"], single.output, parallel.output, iterations: 6, tolerance: 1e-4,
                                     "\(positions) TP 2 × DP 2")
    }

    @Test func recomputationAndMixedPrecisionWork() throws {
        try PretrainRunChecks.expectRecomputationLeavesTheRunUnchanged(Self.run, fields: ["lm loss", "grad norm"], iterations: 6)
        try PretrainRunChecks.expectBF16TrainsAsOneRank(Self.run, losses: ["lm loss"], iterations: 6)
    }

    @Test func aCheckpointResumesTheRun() throws { try PretrainRunChecks.expectCheckpointResumes(Self.run) }

    @Test func whatT5LacksHereIsRefusedByItsFlag() throws {
        for (flags, flag) in [(["--pipeline-model-parallel-size", "2", "--in-process-ranks", "2"], "--pipeline-model-parallel-size"),
                              (["--tensor-model-parallel-size", "2", "--in-process-ranks", "2", "--sequence-parallel"], "--sequence-parallel"),
                              (["--decoder-seq-length", "40"], "--decoder-seq-length"),
                              (["--seq-length", "32"], "--encoder-seq-length")] {
            let result = try PretrainFlagTests.megatron(Self.run + flags)
            #expect(result.status != 0 && result.output.contains(flag), "\(flags): \(result.output)")
        }
        let noSentinels = try PretrainFlagTests.megatron(Self.run.map { $0 == "100" ? "2" : $0 })
        #expect(noSentinels.status != 0 && noSentinels.output.contains("--vocab-extra-ids"), "\(noSentinels.output)")
        let gptRelative = try PretrainFlagTests.megatron(PretrainFlagTests.validRun + ["--position-embedding-type", "relative"])
        #expect(gptRelative.status != 0 && gptRelative.output.contains("T5's"), "\(gptRelative.output)")
    }
}
