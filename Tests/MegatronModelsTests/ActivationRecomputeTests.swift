import MegatronCore
import MegatronModels
import MegatronParallel
import Testing

/// Recomputing activations changes what the forward keeps, never what the backward computes: the
/// loss and every gradient are bit for bit those of keeping everything, dropout included (the
/// recomputed forward draws the same masks), for each method and module, also under tensor
/// parallelism (whose recomputed layers all-reduce again).
@Suite struct ActivationRecomputeTests {
    static let settings: [ActivationRecompute] = [
        .full(.uniform, layers: 1), .full(.uniform, layers: 2), .full(.uniform, layers: 3),
        .full(.block, layers: 1), .full(.block, layers: 3),
        .selective([.coreAttention]), .selective([.layerNorm]), .selective([.mlp]), .selective(Set(ActivationRecompute.Module.allCases)),
    ]

    /// Loss and gradients after one forward and backward of a 3-layer model with dropout and RoPE,
    /// on `group`'s rank when given.
    static func step(_ recompute: ActivationRecompute, swiglu: Bool, group: (any Communicator)? = nil,
                     sequenceParallel: Bool = false, precision: DType = .float32) throws -> (Float, [Float]) {
        let config = tinyConfig {
            $0.numLayers = 3; $0.hiddenDropout = 0.2; $0.attentionDropout = 0.3; $0.swiglu = swiglu
            $0.positionEmbedding = .rope; $0.normalization = swiglu ? .rmsNorm : .layerNorm
        }
        let model = try GPTModel(config: config, seed: 7, groups: group.map(tensorParallelGroups), on: CPUDevice(threads: 1))
        model.recompute = recompute
        model.sequenceParallel = sequenceParallel
        model.savedActivationPrecision = precision
        let batch = try MicroBatch(samples: samples(2, 8), on: model.device)
        let loss = try model.forwardBackward(batch, dropout: .init(seed: 3, iteration: 1, microBatch: 0)).mean
        try model.reduceSequenceParallelGradients()
        return (loss, model.gradients.toFloatArray())
    }

    @Test(arguments: settings)
    func gradientsAreThoseOfKeepingEverything(_ recompute: ActivationRecompute) throws {
        for swiglu in [false, true] {
            let (loss, gradients) = try Self.step(.none, swiglu: swiglu)
            let (recomputedLoss, recomputedGradients) = try Self.step(recompute, swiglu: swiglu)
            #expect(loss.bitPattern == recomputedLoss.bitPattern, "\(recompute), SwiGLU \(swiglu): loss \(recomputedLoss) vs \(loss)")
            let differing = zip(gradients, recomputedGradients).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(differing == 0, "\(recompute), SwiGLU \(swiglu): \(differing) gradients differ")
        }
    }

    /// Kept in 16 bits (--bf16, --fp16), the activations leave the forward and its loss as they are
    /// and change the gradients by the rounding only: within 2^-7 (bf16) or 2^-10 (fp16) of the
    /// gradient's norm, with or without recomputation.
    @Test(arguments: [DType.bfloat16, .float16])
    func sixteenBitActivationsChangeTheGradientsByTheirRoundingOnly(_ precision: DType) throws {
        for recompute in [ActivationRecompute.none, .full(.uniform, layers: 2), .selective([.layerNorm])] {
            let (loss, gradients) = try Self.step(recompute, swiglu: true)
            let (kept16Loss, kept16) = try Self.step(recompute, swiglu: true, precision: precision)
            #expect(loss.bitPattern == kept16Loss.bitPattern, "\(precision), \(recompute): loss \(kept16Loss) vs \(loss)")
            let norm = gradients.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let error = zip(gradients, kept16).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
            let bound: Float = precision == .bfloat16 ? 1.0 / 128 : 1.0 / 1024
            #expect(error > 0 && error <= bound * norm, "\(precision), \(recompute): gradient error \(error) of norm \(norm)")
        }
    }

    @Test func tensorParallelLayersRecomputeToo() throws {
        let failures = TensorParallelTests.Failures()
        try InProcessWorld(size: 2).run { group in
            for sequenceParallel in [false, true] {
                let (loss, gradients) = try Self.step(.none, swiglu: true, group: group, sequenceParallel: sequenceParallel)
                for recompute in [ActivationRecompute.full(.uniform, layers: 2), .selective([.layerNorm, .mlp])] {
                    let (recomputedLoss, recomputed) = try Self.step(recompute, swiglu: true, group: group, sequenceParallel: sequenceParallel)
                    let differing = zip(gradients, recomputed).filter { $0.bitPattern != $1.bitPattern }.count
                    if differing > 0 || loss.bitPattern != recomputedLoss.bitPattern {
                        failures.add("rank \(group.rank), \(recompute), sequence parallel \(sequenceParallel): loss \(recomputedLoss) "
                                     + "vs \(loss), \(differing) gradients differ")
                    }
                }
            }
        }
        #expect(failures.messages.isEmpty, "\(failures.messages)")
    }
}
