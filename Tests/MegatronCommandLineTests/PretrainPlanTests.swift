import ArgumentParser
import MegatronCommandLine
import MegatronCore
import MegatronModels
import Testing

/// The plan of `megatron pretrain`, built in-process from the flags as a user types them: the
/// values a valid run gets, and the rules of Megatron's arguments.py, OptimizerParamScheduler,
/// TransformerConfig and torch.optim, each refusing its flags with a message naming them.
@Suite struct PretrainPlanTests {
    /// A run that is valid as it stands: each case adds or overrides flags (the last value wins).
    static let validRun = ["--mock-data", "--tokenizer-type", "NullTokenizer", "--vocab-size", "64",
                           "--num-layers", "1", "--hidden-size", "16", "--num-attention-heads", "2",
                           "--seq-length", "8", "--max-position-embeddings", "8", "--micro-batch-size", "1",
                           "--train-iters", "2", "--lr", "1e-3", "--threads", "1", "--log-interval", "1"]

    /// What the command would print for a refused flag.
    struct Refusal: Error { let message: String }

    /// The plan of `flags` (for the NullTokenizer's 64 ids), or why it was refused.
    static func plan(_ flags: [String]) -> Result<PretrainPlan, Refusal> {
        do {
            let options = try PretrainOptions.parse(flags)
            return .success(try PretrainPlan(options, worldSize: options.distributed.worldSize, vocabularySize: 64, endOfDocument: 63))
        } catch {
            return .failure(Refusal(message: PretrainOptions.message(for: error)))
        }
    }

    @Test func aValidRunPlansWhatItSays() throws {
        let plan = try Self.plan(Self.validRun + ["--in-process-ranks", "4", "--tensor-model-parallel-size", "2", "--sequence-parallel",
                                                  "--recompute-activations", "--bf16", "--eval-iters", "3"]).get()
        #expect(plan.parallelState.dataParallelSize == 2 && plan.sequenceParallel)
        #expect(plan.model.paddedVocabSize == 256 && plan.model.numLayers == 1)  // 64 padded to 128 × TP 2
        #expect(plan.trainer.globalBatchSize == 2 && plan.trainer.trainIters == 2 && plan.data.trainingSamples == 4)
        #expect(plan.recompute == .selective([.coreAttention]))
        #expect(plan.optimizer.paramsDType == .bfloat16 && plan.optimizer.gradScaler == nil)
        #expect(plan.evaluation?.iterations == 3 && plan.sample == nil && plan.load == nil && plan.data.mock)
        #expect(plan.trainer.checkpointFormat == .torchDist && !plan.trainer.asyncSave)
        let one = try Self.plan(Self.validRun + ["--sequence-parallel"]).get()
        #expect(!one.sequenceParallel && one.warnings == ["WARNING: Disabling sequence parallelism because tensor model parallelism is disabled"])
    }

    @Test(arguments: [
        // arguments.py: iteration-based and sample-based schedule flags do not mix.
        (["--lr-decay-samples", "100"], "--lr-decay-samples does not go with --train-iters"),
        (["--lr-warmup-samples", "4"], "--lr-warmup-samples does not go with --train-iters"),
        (["--lr-warmup-fraction", "0.1", "--lr-warmup-iters", "1"], "give only one of --lr-warmup-fraction and --lr-warmup-iters"),
        // OptimizerParamScheduler's assertions.
        (["--min-lr=-1e-4"], "--min-lr -0.0001: expected 0 or more"),
        (["--lr-warmup-init", "1"], "--lr-warmup-init 1.0 exceeds --lr 0.001"),
        (["--lr-decay-iters", "0"], "--lr-decay-iters 0: expected at least 1"),
        (["--lr-warmup-iters", "2"], "the warm-up (--lr-warmup-iters) must end before the decay does"),
        (["--lr-decay-style", "WSD"], "--lr-decay-style WSD needs --lr-wsd-decay-iters"),
        // torch.optim's ranges.
        (["--adam-beta1", "1"], "--adam-beta1 1.0: expected a value in [0, 1)"),
        (["--adam-beta2", "1.5"], "--adam-beta2 1.5: expected a value in [0, 1)"),
        (["--adam-eps=-1e-8"], "--adam-eps -1e-08: expected 0 or more"),
        (["--weight-decay=-0.1"], "--weight-decay -0.1: expected 0 or more"),
        (["--clip-grad=-1"], "--clip-grad -1.0: expected 0 or more"),
        // arguments.py's weight decay schedule.
        (["--start-weight-decay", "0.01"], "--start-weight-decay needs --weight-decay-incr-style linear or cosine"),
        (["--weight-decay-incr-style", "linear", "--end-weight-decay", "0.1"],
         "--weight-decay-incr-style linear needs --start-weight-decay and --end-weight-decay"),
        (["--weight-decay-incr-style", "cosine", "--start-weight-decay=-1", "--end-weight-decay", "0.1"],
         "--start-weight-decay -1.0: expected 0 or more"),
        (["--weight-decay-incr-style", "linear", "--start-weight-decay", "0.1", "--end-weight-decay", "0.01"],
         "--end-weight-decay 0.01 is below --start-weight-decay 0.1: the schedule only increases"),
        // The model.
        (["--position-embedding-type", "rope", "--rotary-base", "0"], "--rotary-base 0.0: expected a positive base"),
        (["--init-method-std=-0.02"], "--init-method-std -0.02: expected 0 or more"),
        // Parallel layouts.
        (["--in-process-ranks", "3", "--tensor-model-parallel-size", "3"],
         "--num-attention-heads 2 is not divisible by --tensor-model-parallel-size 3"),
        (["--in-process-ranks", "2", "--tensor-model-parallel-size", "4"],
         "world size 2 is not divisible by --tensor-model-parallel-size 4"),
        (["--in-process-ranks", "2", "--tensor-model-parallel-size", "2", "--sequence-parallel", "--seq-length", "7"],
         "--sequence-parallel: --seq-length 7 is not divisible by --tensor-model-parallel-size 2"),
        (["--in-process-ranks", "2", "--pipeline-model-parallel-size", "2"],
         "--num-layers 1 is not divisible by --pipeline-model-parallel-size 2"),
        // Context parallelism, as its ring attention needs it.
        (["--in-process-ranks", "2", "--context-parallel-size", "2"],
         "--context-parallel-size 2: the ring attention has no attention dropout here; set --attention-dropout 0"),
        (["--in-process-ranks", "2", "--context-parallel-size", "2", "--attention-dropout", "0", "--seq-length", "6"],
         "--context-parallel-size 2: --seq-length 6 does not split into 4 equal chunks (two per context-parallel rank)"),
        (["--in-process-ranks", "2", "--context-parallel-size", "2", "--attention-dropout", "0", "--reset-attention-mask"],
         "--context-parallel-size 2: --reset-attention-mask does not combine with context parallelism here"),
        // The step batch size schedule, as Megatron's arguments.py and StepBatchsizeNumMicroBatchesCalculator check it.
        (["--step-batch-size-schedule", "0:2 16:4", "--global-batch-size", "2"],
         "give only one of --step-batch-size-schedule and --global-batch-size"),
        (["--step-batch-size-schedule", "8:2"], "--step-batch-size-schedule: the first threshold must be 0, got 8 tokens"),
        // Activation recomputation, as Megatron's TransformerConfig checks it.
        (["--recompute-granularity", "full"], "--recompute-granularity full needs --recompute-method uniform or block"),
        (["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "5"],
         "--recompute-granularity full needs --recompute-num-layers between 1 and --num-layers 1"),
        (["--recompute-granularity", "full", "--recompute-method", "chunks", "--recompute-num-layers", "1"],
         "The value 'chunks' is invalid for '--recompute-method <recompute-method>'. Please provide one of 'uniform' and 'block'."),
        (["--recompute-activations", "--recompute-method", "block"],
         "--recompute-granularity selective takes no --recompute-method or --recompute-num-layers"),
        (["--recompute-granularity", "selective", "--recompute-modules", "moe"],
         "The value 'moe' is invalid for '--recompute-modules <recompute-modules>'. Please provide one of 'core_attn', 'layernorm' or 'mlp'."),
        // Choice flags take only their choices.
        (["--optimizer", "adamw"], "The value 'adamw' is invalid for '--optimizer <optimizer>'. Please provide one of 'adam' and 'sgd'."),
        (["--lr-decay-style", "step"], "The value 'step' is invalid for '--lr-decay-style <lr-decay-style>'"),
        (["--position-embedding-type", "alibi"], "The value 'alibi' is invalid for '--position-embedding-type <position-embedding-type>'"),
        (["--tokenizer-type", "SentencePieceTokenizer"], "The value 'SentencePieceTokenizer' is invalid for '--tokenizer-type <tokenizer-type>'"),
        (["--recompute-num-layers", "1"], "--recompute-method, --recompute-num-layers and --recompute-modules need --recompute-granularity"),
        // The interleaved pipeline schedule, as Megatron's arguments.py and schedules check it.
        (["--num-layers-per-virtual-pipeline-stage", "1", "--num-virtual-stages-per-pipeline-rank", "2"],
         "--num-layers-per-virtual-pipeline-stage and --num-virtual-stages-per-pipeline-rank: give one of them"),
        (["--num-layers", "4", "--num-virtual-stages-per-pipeline-rank", "2"],
         "the interleaved pipeline schedule (--num-layers-per-virtual-pipeline-stage, --num-virtual-stages-per-pipeline-rank) "
         + "needs --pipeline-model-parallel-size above 1"),
        (["--in-process-ranks", "2", "--num-layers", "6", "--pipeline-model-parallel-size", "2", "--num-layers-per-virtual-pipeline-stage", "2"],
         "--num-layers-per-virtual-pipeline-stage 2: the 6 layers of --num-layers over --pipeline-model-parallel-size 2 stages "
         + "do not split into chunks of 2 layers"),
        (["--in-process-ranks", "2", "--num-layers", "6", "--pipeline-model-parallel-size", "2", "--num-virtual-stages-per-pipeline-rank", "2"],
         "--num-layers 6 does not split into 2 model chunks on each of --pipeline-model-parallel-size 2 stages: expected a multiple of 4"),
        (["--in-process-ranks", "2", "--num-layers", "4", "--pipeline-model-parallel-size", "2", "--num-virtual-stages-per-pipeline-rank", "2",
          "--decoder-first-pipeline-num-layers", "2"],
         "--num-layers-per-virtual-pipeline-stage does not combine with --decoder-first-pipeline-num-layers here"),
        (["--in-process-ranks", "2", "--num-layers", "4", "--pipeline-model-parallel-size", "2", "--num-layers-per-virtual-pipeline-stage", "1",
          "--global-batch-size", "3"],
         "the interleaved pipeline schedule needs the micro-batches of an iteration (--global-batch-size 3 / (--micro-batch-size 1 × "
         + "data-parallel size 1)) to be a multiple of --pipeline-model-parallel-size 2"),
        (["--in-process-ranks", "2", "--num-layers", "4", "--pipeline-model-parallel-size", "2", "--num-layers-per-virtual-pipeline-stage", "1",
          "--step-batch-size-schedule", "0:2 16:3"],
         "the interleaved pipeline schedule needs the micro-batches of an iteration (global batch 3 / (--micro-batch-size 1 × "
         + "data-parallel size 1)) to be a multiple of --pipeline-model-parallel-size 2"),
        (["--in-process-ranks", "8", "--tensor-model-parallel-size", "4", "--context-parallel-size", "2", "--sequence-parallel",
          "--num-attention-heads", "4", "--seq-length", "12", "--max-position-embeddings", "12", "--attention-dropout", "0"],
         "--sequence-parallel: the 6 tokens of a sequence on each of --context-parallel-size 2 ranks do not split over "
         + "--tensor-model-parallel-size 4"),
        (["--global-batch-size", "0"], "--global-batch-size 0: expected at least 1"),
        // Uneven pipeline stages, as Megatron's TransformerConfig checks them.
        (["--decoder-first-pipeline-num-layers", "1"], "--decoder-first-pipeline-num-layers needs --pipeline-model-parallel-size above 1"),
        (["--in-process-ranks", "2", "--num-layers", "4", "--pipeline-model-parallel-size", "2", "--decoder-last-pipeline-num-layers", "0"],
         "--decoder-last-pipeline-num-layers 0: expected at least 1"),
        (["--in-process-ranks", "3", "--num-layers", "4", "--pipeline-model-parallel-size", "3", "--decoder-first-pipeline-num-layers", "1"],
         "--decoder-first-pipeline-num-layers 1 leaves 3 of --num-layers 4 for 2 other pipeline stage(s) of --pipeline-model-parallel-size 3: "
         + "expected an equal number on each, at least 1"),
        (["--exit-duration-in-mins=-1"], "--exit-duration-in-mins -1.0: expected 0 or more"),
        // Checkpoints and the distributed optimizer's overlaps, as Megatron's arguments.py checks them.
        (["--ckpt-format", "zarr"], "The value 'zarr' is invalid for '--ckpt-format <ckpt-format>'. Please provide one of 'torch_dist' and 'torch'."),
        (["--ckpt-format", "torch", "--async-save"], "--async-save needs --ckpt-format torch_dist"),
        (["--in-process-ranks", "2", "--overlap-grad-reduce", "--overlap-param-gather"],
         "--overlap-param-gather needs --use-distributed-optimizer and --overlap-grad-reduce"),
        (["--exit-signal-handler", "--exit-signal", "SIGKILL"], "--exit-signal SIGKILL: expected SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2"),
        // Mixed precision, as Megatron's arguments and DynamicGradScaler check it.
        (["--fp16", "--bf16"], "--fp16 and --bf16 exclude each other: pick one"),
        (["--fp16", "--hysteresis", "0"], "--hysteresis 0: expected at least 1"),
        (["--fp16", "--loss-scale-window", "0"], "--loss-scale-window 0: expected at least 1"),
        (["--fp16", "--initial-loss-scale", "2", "--min-loss-scale", "4"],
         "--min-loss-scale 4.0: expected above 0 and at most --initial-loss-scale 2.0"),
        (["--bf16", "--loss-scale=-2"], "--loss-scale -2.0: expected a positive number"),
        (["--fp16", "--initial-loss-scale", "0"], "--initial-loss-scale 0.0: expected a positive number"),
        (["--bf16", "--use-precision-aware-optimizer", "--exp-avg-dtype", "bf16", "--save", "/tmp/unused-checkpoint", "--ckpt-format", "torch"],
         "--ckpt-format torch writes fp32 optimizer state; this run keeps 16-bit moments or main-parameter remainders "
         + "(--use-precision-aware-optimizer): save with --ckpt-format torch_dist"),
        // Sampling after training.
        (["--sample-tokens=-3"], "--sample-tokens -3: expected 0 or more"),
        (["--sample-tokens", "4", "--temperature", "0"], "--temperature 0.0: expected more than 0"),
        // Files.
        (["--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", "/nonexistent/vocab.json", "--merge-file", "/nonexistent/merges.txt"],
         "--vocab-file /nonexistent/vocab.json: no such readable file"),
    ])
    func contradictoryFlagsAreErrorsNamingThem(extra: [String], message: String) throws {
        guard case .failure(let refusal) = Self.plan(Self.validRun + extra) else {
            Issue.record("\(extra): planned")
            return
        }
        #expect(refusal.message.contains(message), "\(extra): \(refusal.message)")
    }
}
