import MegatronCore
import MegatronParallel

/// One rank's part of a model, as the optimizer, data parallelism and checkpoints see it (Megatron's
/// MegatronModule): its parameters in one flat fp32 buffer laid out by `layout`, the gradients in a
/// twin buffer, and the process groups that share them. What runs on the buffers is the model's own
/// (`PretrainingModel`).
public protocol MegatronModule: AnyObject {
    var layout: ParameterLayout { get }
    var parameters: Tensor { get }
    var gradients: Tensor { get }
    var device: CPUDevice { get }
    var groups: ProcessGroups { get }
    var tensorParallel: TensorParallel { get }
    var pipeline: PipelineStage { get }

    /// The span of the last pipeline stage's copy of the word embedding (tied embeddings over several
    /// stages), whose gradient `reduceSharedEmbeddingGradients` completes; nil elsewhere.
    var sharedEmbeddingRange: Range<Int>? { get }
    /// Adds the two stages' gradients of a word embedding shared by the first and last pipeline
    /// stages on both (Megatron's embedding-group all-reduce). Once per iteration, after the last backward.
    func reduceSharedEmbeddingGradients() throws
    /// Under sequence parallelism, sums over the tensor-parallel group the gradients of the replicated
    /// parameters that act on this rank's rows only. Once per iteration, after the last backward.
    func reduceSequenceParallelGradients() throws
}

extension MegatronModule {
    /// The L2 norm over the whole model of `buffer` (the parameters or the gradients), each
    /// replicated value counted once: collective over the tensor- and pipeline-parallel groups. A
    /// 16-bit buffer is read in fp32 a block at a time.
    public func wholeModelNorm(of buffer: Tensor) throws -> Double {
        let spans = try layout.normSpans.map { try buffer.view(offset: $0.lowerBound, shape: [$0.count]) }
        var sumOfSquares = 0.0
        if buffer.dtype == .float32 {
            let norm = try Elementwise.globalL2Norm(spans, on: device)
            sumOfSquares = norm * norm
        } else {
            let scratch = try Tensor(shape: [min(Tensor.fp32BlockElements, buffer.count)], on: device, zeroed: false)
            for span in spans {
                try span.forEachFP32Block(scratch: scratch, on: device) { _, values in
                    let norm = try Elementwise.globalL2Norm([values], on: device)
                    sumOfSquares += norm * norm
                }
            }
        }
        return try groups.modelParallel.allReduce(sumOfSquares, op: .sum).squareRoot()
    }

    /// Sets every gradient to zero (before an iteration's first micro-batch).
    public func zeroGradients() { gradients.zero() }
}
