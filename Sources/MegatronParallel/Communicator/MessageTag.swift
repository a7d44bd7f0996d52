/// The tags of every point-to-point message the system sends, in one place so no two kinds of
/// message share one on a group.
public enum MessageTag {
    /// A checkpoint's data-parallel shards (distributed optimizer state), sent to data-parallel rank 0.
    public static let checkpointShard = 7100
    /// A checkpoint's model-parallel parts (tensor and pipeline shards), sent to the first rank of the group.
    public static let checkpointModelParallel = 7101
    /// The tied word embedding's gradient, exchanged by the first and last pipeline stages.
    public static let sharedEmbedding = 7200
    /// Activations to the next pipeline stage, and gradients to the previous one (two tags: with two
    /// stages in a ring, one step may send both to the same peer).
    public static let pipelineForward = 7300
    public static let pipelineBackward = 7301
    /// Context parallelism's ring attention: the fused QKV passed round the ring, and in the backward
    /// the gradient of its keys and values.
    public static let contextParallel = 7400
    public static let contextParallelGradient = 7401
}
