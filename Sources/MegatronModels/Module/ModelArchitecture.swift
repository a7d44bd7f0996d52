/// A model family's architecture: what a checkpoint records of the network, must match when the
/// checkpoint is loaded, and lays out the parameters of any rank.
public protocol ModelArchitecture: Codable, Equatable, Sendable {
    /// The fields in which `other` describes another network, each as "name: ours vs other's", by
    /// Megatron's argument names.
    func architectureDifferences(from other: Self) -> [String]
    /// The parameters of tensor-parallel rank `tensorParallelRank` of `tensorParallelSize` on
    /// pipeline stage `pipelineStage` of `pipelineStages`; the whole model with the defaults.
    func layout(tensorParallelRank: Int, tensorParallelSize: Int, pipelineStage: Int, pipelineStages: Int) -> ParameterLayout
}

extension ModelArchitecture {
    /// The whole model's parameters, as a checkpoint names and shapes them.
    public var wholeLayout: ParameterLayout {
        layout(tensorParallelRank: 0, tensorParallelSize: 1, pipelineStage: 0, pipelineStages: 1)
    }
}
