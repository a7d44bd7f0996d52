import ArgumentParser
import Foundation
import MegatronCommandLine

/// `megatron pretrain-bert`: BERT pretraining with the flags of Megatron-LM's pretrain_bert.py: the
/// masked-LM and (unless --bert-no-binary-head) sentence-order losses over a sentence-split corpus
/// (`megatron preprocess-data --split-sentences`) with a WordPiece vocabulary.
struct PretrainBert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pretrain-bert",
        abstract: "Pretrain a BERT model (Megatron-LM's pretrain_bert.py flags).",
        discussion: """
            The data is a sentence-split dataset (one indexed sequence per sentence) and the tokenizer \
            --tokenizer-type BertWordPieceLowerCase|BertWordPieceCase --vocab-file. Samples follow \
            Megatron's BertDataset: runs of whole sentences, two segments (swapped half the time for \
            the sentence-order loss), 15 % of tokens masked by --mask-prob. \
            --apply-residual-connection-post-layernorm builds the original post-norm BERT. The log \
            prints lm loss and sop loss. Launch several ranks as `megatron pretrain` does.
            """)

    @OptionGroup var options: PretrainOptions
    @OptionGroup(title: "BERT") var bert: BertArguments

    func run() throws {
        let start = Date()
        let tokenizer = try options.tokenizer.makeTokenizer()
        let plan = try PretrainPlan(options, family: .bert(try bert.settings()), worldSize: options.distributed.worldSize,
                                    vocabularySize: tokenizer.vocabSize, endOfDocument: tokenizer.eod)
        try Pretraining(plan: plan, options: options, tokenizer: tokenizer).run(startTime: start)
    }
}
