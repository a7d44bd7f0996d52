import Foundation
import Testing

/// `megatron pretrain` on two in-process ranks, as two tensor-parallel ranks (with and without
/// --sequence-parallel) or two pipeline stages, logs the run one rank logs (losses and gradient
/// norms to rounding) and generates the same sample at the end.
@Suite struct PretrainModelParallelTests {
    /// The values of `field` ("lm loss", "grad norm") in the iteration lines of a log.
    static func values(_ field: String, in log: String) -> [Double] {
        log.split(separator: "\n").filter { $0.contains(" iteration ") }.compactMap { line in
            line.split(separator: "|").first { $0.contains(field + ":") }
                .flatMap { Double($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
        }
    }

    /// The parameter norm is a collective over the model-parallel ranks: with TensorBoard on the
    /// last rank only, every rank must still compute it (else the run hangs; the short timeout turns
    /// a hang into an error).
    @Test func theParameterNormWithTensorBoardRunsOnEveryRank() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tb-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        for layout in [["--tensor-model-parallel-size", "2"], ["--pipeline-model-parallel-size", "2"]] {
            let run = try PretrainFlagTests.megatron(PretrainFlagTests.validRun + layout + [
                "--num-layers", "2", "--train-iters", "3", "--log-interval", "2", "--in-process-ranks", "2", "--log-params-norm",
                "--tensorboard-dir", directory.path, "--distributed-timeout-minutes", "0.2", "--make-vocab-size-divisible-by", "32"])
            #expect(run.status == 0 && run.output.contains("params norm"), "\(layout): \(run.output)")
        }
    }

    @Test func twoModelParallelRanksTrainAsOne() throws {
        // Megatron pads the vocabulary to a multiple of 128 × tensor-parallel size by default, which
        // would give the two runs different models (128 and 256 rows); 32 pads 64 tokens to 64 on both.
        let run = PretrainFlagTests.validRun + ["--num-layers", "2", "--num-attention-heads", "4", "--train-iters", "4", "--global-batch-size", "2",
                                                "--hidden-dropout", "0.1", "--attention-dropout", "0.1", "--sample-tokens", "4",
                                                "--make-vocab-size-divisible-by", "32"]
        let single = try PretrainFlagTests.megatron(run)
        #expect(single.status == 0 && single.output.contains("padded vocab 64,"), "\(single.output)")
        try Self.expectTwoRanks(run, matching: single.output, layouts: [
            (["--tensor-model-parallel-size", "2"], "tensor-parallel size 2, pipeline-parallel size 1"),
            (["--tensor-model-parallel-size", "2", "--sequence-parallel"], "tensor-parallel size 2 (sequence parallel), pipeline-parallel size 1"),
            (["--pipeline-model-parallel-size", "2"], "tensor-parallel size 1, pipeline-parallel size 2"),
        ])
    }

    /// Runs `run` on two in-process ranks in each of `layouts` (its flags, and what the startup line
    /// says of it): the losses and gradient norms of `log` (one rank's) to rounding, and its sample.
    static func expectTwoRanks(_ run: [String], matching log: String, layouts: [([String], String)]) throws {
        let sample = { (log: String) in log.split(separator: "\n").first { $0.hasPrefix("> sample") } }
        for (flags, layout) in layouts {
            let parallel = try PretrainFlagTests.megatron(run + ["--in-process-ranks", "2"] + flags)
            #expect(parallel.status == 0 && parallel.output.contains(layout), "\(parallel.output)")
            for field in ["lm loss", "grad norm"] {
                let a = Self.values(field, in: log), b = Self.values(field, in: parallel.output)
                #expect(a.count == 4 && b.count == 4 && zip(a, b).allSatisfy { abs($0 - $1) <= 1e-4 * abs($0) + 1e-3 },
                        "\(flags) \(field): \(a) vs \(b)")
            }
            #expect(sample(log) != nil && sample(log) == sample(parallel.output), "\(parallel.output)")
        }
    }

    /// Two context-parallel ranks, and two pipeline stages of two model chunks each (interleaved),
    /// log what one rank logs and generate the same sample (under context parallelism from the
    /// gathered model); without attention dropout, which the ring attention does not have.
    @Test func contextParallelAndInterleavedRanksTrainAsOneAndSample() throws {
        let run = PretrainFlagTests.validRun + ["--num-layers", "4", "--num-attention-heads", "4", "--train-iters", "4", "--global-batch-size", "2",
                                                "--hidden-dropout", "0.1", "--attention-dropout", "0", "--sample-tokens", "4"]
        let single = try PretrainFlagTests.megatron(run)
        #expect(single.status == 0, "\(single.output)")
        try Self.expectTwoRanks(run, matching: single.output, layouts: [
            (["--context-parallel-size", "2"], "context-parallel size 2"),
            (["--pipeline-model-parallel-size", "2", "--num-layers-per-virtual-pipeline-stage", "1"],
             "pipeline-parallel size 2 (2 model chunks each, interleaved)"),
        ])
    }

    /// 16-bit storage: under --fp16 (fp16 gradients) two pipeline stages add the tied embedding's
    /// 16-bit gradients; under --bf16 two data-parallel ranks all-gather bf16 parameters (reducing
    /// fp32 gradients); with the precision-aware optimizer (bf16 gradients, moments and remainders)
    /// sequence-parallel ranks reduce 16-bit norm gradients and two data-parallel ranks reduce bf16
    /// gradients; every run logs what one rank logs.
    @Test func sixteenBitStorageRanksTrainAsOne() throws {
        let base = PretrainFlagTests.validRun + ["--num-layers", "2", "--num-attention-heads", "4", "--train-iters", "4", "--global-batch-size", "2",
                                                 "--hidden-dropout", "0", "--attention-dropout", "0", "--sample-tokens", "4",
                                                 "--make-vocab-size-divisible-by", "32"]
        let fp16 = base + ["--fp16", "--initial-loss-scale", "1024"]
        let single16 = try PretrainFlagTests.megatron(fp16)
        #expect(single16.status == 0, "\(single16.output)")
        try Self.expectTwoRanks(fp16, matching: single16.output, layouts: [
            (["--pipeline-model-parallel-size", "2"], "tensor-parallel size 1, pipeline-parallel size 2"),
        ])
        let bf16 = base + ["--bf16"]
        let singleBF16 = try PretrainFlagTests.megatron(bf16)
        #expect(singleBF16.status == 0, "\(singleBF16.output)")
        try Self.expectTwoRanks(bf16, matching: singleBF16.output, layouts: [
            (["--use-distributed-optimizer"], "data-parallel size 2"),
        ])
        let aware = base + ["--bf16", "--use-precision-aware-optimizer", "--main-grads-dtype", "bf16", "--exp-avg-dtype", "bf16",
                            "--exp-avg-sq-dtype", "bf16"]
        let single = try PretrainFlagTests.megatron(aware)
        #expect(single.status == 0, "\(single.output)")
        try Self.expectTwoRanks(aware, matching: single.output, layouts: [
            (["--tensor-model-parallel-size", "2", "--sequence-parallel"], "tensor-parallel size 2 (sequence parallel), pipeline-parallel size 1"),
            (["--use-distributed-optimizer"], "data-parallel size 2"),
        ])
    }

    /// Three layers on two pipeline stages, one and two (--decoder-last-pipeline-num-layers 2), log
    /// what one rank logs.
    @Test func unevenPipelineStagesTrainAsOne() throws {
        let run = PretrainFlagTests.validRun + ["--num-layers", "3", "--train-iters", "4", "--global-batch-size", "2"]
        let single = try PretrainFlagTests.megatron(run)
        let staged = try PretrainFlagTests.megatron(run + ["--in-process-ranks", "2", "--pipeline-model-parallel-size", "2",
                                                           "--decoder-last-pipeline-num-layers", "2"])
        #expect(single.status == 0 && staged.status == 0, "\(staged.output)")
        for field in ["lm loss", "grad norm"] {
            let a = Self.values(field, in: single.output), b = Self.values(field, in: staged.output)
            #expect(a.count == 4 && b.count == 4 && zip(a, b).allSatisfy { abs($0 - $1) <= 1e-4 * abs($0) + 1e-3 }, "\(field): \(a) vs \(b)")
        }
    }
}
