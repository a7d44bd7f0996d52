import ArgumentParser
import Foundation
import MegatronCommandLine

/// `megatron pretrain-t5`: T5 pretraining with the flags of Megatron-LM's pretrain_t5.py: span
/// corruption over a sentence-split corpus (`megatron preprocess-data --split-sentences`) with a
/// WordPiece vocabulary and its sentinels (--vocab-extra-ids).
struct PretrainT5: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pretrain-t5",
        abstract: "Pretrain a T5 model (Megatron-LM's pretrain_t5.py flags).",
        discussion: """
            The encoder is --encoder-num-layers (or --num-layers) deep over --encoder-seq-length (or \
            --seq-length) tokens, the decoder --decoder-num-layers over --decoder-seq-length. \
            --position-embedding-type relative uses T5's relative position buckets \
            (--relative-attention-num-buckets, --relative-attention-max-distance) instead of learned \
            positions. The data is a sentence-split dataset and --tokenizer-type \
            BertWordPieceLowerCase|BertWordPieceCase --vocab-file --vocab-extra-ids 100: Megatron's \
            T5Dataset masks --mask-prob of each sample's tokens in spans, each replaced by a sentinel \
            the decoder learns to expand. The log prints lm loss.
            """)

    @OptionGroup var options: PretrainOptions
    @OptionGroup(title: "T5") var t5: T5Arguments

    func run() throws {
        let start = Date()
        let tokenizer = try options.tokenizer.makeTokenizer()
        let settings = try t5.settings(relative: options.model.positionEmbeddingType == .relative)
        let plan = try PretrainPlan(options, family: .t5(settings), worldSize: options.distributed.worldSize,
                                    vocabularySize: tokenizer.vocabSize, endOfDocument: tokenizer.eod)
        try Pretraining(plan: plan, options: options, tokenizer: tokenizer).run(startTime: start)
    }
}
