import ArgumentParser
import Foundation
import MegatronCommandLine

/// `megatron pretrain`: GPT pretraining with the flags of Megatron-LM's pretrain_gpt.py. It parses
/// the flags, builds the run's `PretrainPlan` (which checks them together) and runs it.
struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pretrain a GPT model (Megatron-LM's pretrain_gpt.py flags).",
        discussion: """
            Throughput is model TFLOP/s per rank by Megatron's formula (num_floating_point_operations in \
            megatron/training/training.py: every GEMM three times, the attention core's causal half).

            Several ranks: `mpirun -np 4 megatron pretrain …` (one process per rank, on one machine or \
            several), or `megatron pretrain --distributed-backend in-process --in-process-ranks 4 …` \
            (threads of one process). Ranks share the cores of a machine: each uses cores ÷ ranks there \
            unless --threads says otherwise. The last rank prints the training log, as Megatron's.
            """)

    @OptionGroup var options: PretrainOptions

    func run() throws {
        let start = Date()
        // Text in and out with a text tokenizer; NullTokenizer runs print token ids.
        let tokenizer = options.tokenizer.readsText ? try options.tokenizer.makeTokenizer() : nil
        let vocabularySize = tokenizer?.vocabSize ?? options.tokenizer.vocabSize!
        // The end of document: the tokenizer's (GPT-2's <|endoftext|>, …), or the NullTokenizer's last id (as mock data's).
        let plan = try PretrainPlan(options, worldSize: options.distributed.worldSize, vocabularySize: vocabularySize,
                                    endOfDocument: tokenizer?.eod ?? Int32(vocabularySize - 1))
        try Pretraining(plan: plan, options: options, tokenizer: tokenizer).run(startTime: start)
    }
}
