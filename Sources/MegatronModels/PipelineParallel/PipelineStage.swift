import MegatronCore
import MegatronParallel

/// The part of a GPT model one pipeline-parallel rank holds (Megatron's pipeline stage): with L
/// layers over `count` stages, stage i holds layers i·L/count ..< (i+1)·L/count, unless the first or
/// last stage is given its own number of layers (the others then share the rest); the first stage also
/// the embeddings, the last the final norm and the output layer. With tied embeddings and more than
/// one stage, the last stage keeps its own copy of the word embedding for the output layer
/// (Megatron's shared embedding): the two copies start equal and their gradients are summed over
/// the first and last stage every iteration, so they stay equal.
///
/// Under the interleaved schedule (`TransformerConfig.virtualPipelineModelParallelSize` v > 1) the
/// layers split into p·v equal virtual stages and stage i holds v model chunks, virtual stages
/// i, p + i, …, (v − 1)·p + i: the embeddings go with chunk 0 of the first stage, the final norm
/// and output layer with chunk v − 1 of the last, and activations pass around the ring of stages,
/// the last stage's chunk j feeding the first stage's chunk j + 1.
///
/// The stages exchange activations and gradients over `group` (ranked in stage order); the pipeline
/// schedule moves them, the model computes one chunk of one stage at a time.
public struct PipelineStage: Sendable {
    public let group: any Communicator
    /// Model chunks this stage holds (v; 1 without interleaving).
    public let modelChunks: Int

    public init(group: any Communicator, modelChunks: Int = 1) {
        self.group = group
        self.modelChunks = group.size > 1 ? modelChunks : 1
    }

    /// The one stage of `model` (BERT, T5), which runs on a single pipeline stage: an error naming
    /// the flag over a larger pipeline group.
    static func only(of group: any Communicator, model: String) throws -> PipelineStage {
        guard group.size == 1 else {
            throw ConfigError(flag: "--pipeline-model-parallel-size", "\(model) runs on one pipeline stage here: "
                              + "--pipeline-model-parallel-size \(group.size) is not supported")
        }
        return PipelineStage(group: group)
    }

    public var index: Int { group.rank }
    public var count: Int { group.size }
    public var isFirst: Bool { index == 0 }
    public var isLast: Bool { index == count - 1 }

    /// Whether model chunk `chunk` of this stage is the model's first virtual stage (it embeds the tokens).
    public func isFirst(chunk: Int) -> Bool { isFirst && chunk == 0 }
    /// Whether model chunk `chunk` of this stage is the model's last virtual stage (it computes the logits).
    public func isLast(chunk: Int) -> Bool { isLast && chunk == modelChunks - 1 }

    /// The layers of each model chunk stage `index` of `count` holds of `config`'s (split as
    /// `TransformerConfig.validate` checks): one range without interleaving, v under it.
    public static func layers(_ config: TransformerConfig, stage index: Int, of count: Int) -> [Range<Int>] {
        if count > 1, let v = config.virtualPipelineModelParallelSize, v > 1 {
            let perChunk = config.numLayers / (count * v)
            return (0 ..< v).map { chunk in (chunk * count + index) * perChunk ..< (chunk * count + index + 1) * perChunk }
        }
        let first = count > 1 ? config.numLayersInFirstPipelineStage : nil, last = count > 1 ? config.numLayersInLastPipelineStage : nil
        let middleStages = count - (first == nil ? 0 : 1) - (last == nil ? 0 : 1)
        let middle = middleStages > 0 ? (config.numLayers - (first ?? 0) - (last ?? 0)) / middleStages : 0
        let size = { (stage: Int) in stage == 0 ? first ?? middle : stage == count - 1 ? last ?? middle : middle }
        let start = (0 ..< index).reduce(0) { $0 + size($1) }
        return [start ..< start + size(index)]
    }
}
