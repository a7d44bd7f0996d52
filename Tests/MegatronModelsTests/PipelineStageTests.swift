import Foundation
import MegatronCore
import MegatronModels
import MegatronParallel
import Testing

/// A model split into pipeline stages (and tensor-parallel shards of them) computes what one rank
/// computes: each stage holds its layers of the same initialisation, the stages run one micro-batch
/// forward and backward passing activations and gradients (as a schedule would), and the last
/// stage's loss and every rank's gradients (after the shared word embedding's are summed) are the
/// whole model's. Dropout included: the masks depend on the layer, not the stage.
@Suite struct PipelineStageTests {
    /// Megatron's uneven split: the first and last stages take the layers given, the others share the
    /// rest equally, and a split that cannot share them is an error naming the flags.
    @Test func unevenStagesTakeTheirLayersAndTheOthersShareTheRest() throws {
        var c = GPTModelTests.variants[0].1
        c.numLayers = 8
        (c.numLayersInFirstPipelineStage, c.numLayersInLastPipelineStage) = (1, 3)
        try c.validate(tensorParallelSize: 1, pipelineParallelSize: 4)
        #expect((0 ..< 4).map { PipelineStage.layers(c, stage: $0, of: 4) } == [[0 ..< 1], [1 ..< 3], [3 ..< 5], [5 ..< 8]])
        c.numLayersInLastPipelineStage = nil
        #expect { try c.validate(tensorParallelSize: 1, pipelineParallelSize: 4) } throws: {
            "\($0)".contains("--decoder-first-pipeline-num-layers 1 leaves 7 of --num-layers 8 for 3 other pipeline stage(s)")
        }
        // Only the last stage's given: 7 layers over 3 stages, the last with 1.
        var last = c
        last.numLayers = 7
        (last.numLayersInFirstPipelineStage, last.numLayersInLastPipelineStage) = (nil, 1)
        try last.validate(tensorParallelSize: 1, pipelineParallelSize: 3)
        #expect((0 ..< 3).map { PipelineStage.layers(last, stage: $0, of: 3) } == [[0 ..< 3], [3 ..< 6], [6 ..< 7]])
        (last.numLayersInFirstPipelineStage, last.numLayersInLastPipelineStage) = (2, 4)
        #expect { try last.validate(tensorParallelSize: 1, pipelineParallelSize: 2) } throws: {
            "\($0)".contains("--decoder-first-pipeline-num-layers 2 and --decoder-last-pipeline-num-layers 4 on the only two pipeline stages: "
                            + "expected them to add up to --num-layers 7")
        }
        c.numLayersInFirstPipelineStage = 2
        #expect((0 ..< 4).map { PipelineStage.layers(c, stage: $0, of: 4) } == [[0 ..< 2], [2 ..< 4], [4 ..< 6], [6 ..< 8]])
        #expect(PipelineStage.layers(c, stage: 0, of: 1) == [0 ..< 8], "one stage holds every layer")
        try c.validate(tensorParallelSize: 1, pipelineParallelSize: 1)
    }

    /// Four layers over 2 or 4 stages; or, uneven, five over 3 stages of 1, 2 and 2 layers
    /// (--decoder-first-pipeline-num-layers 1 --decoder-last-pipeline-num-layers 2).
    @Test(arguments: [(0, 2, 1, false, false), (1, 2, 1, false, false), (2, 4, 1, false, false), (0, 2, 2, true, false),
                      (1, 2, 2, false, false), (0, 3, 1, false, true), (2, 3, 2, true, true)])
    func stagesComputeTheWholeModel(variant: Int, pipelineSize pp: Int, tensorParallelSize tp: Int, sequenceParallel: Bool,
                                    uneven: Bool) throws {
        let (name, variantConfig) = GPTModelTests.variants[variant]
        var split = variantConfig
        split.numLayers = uneven ? 5 : 4
        if uneven { (split.numLayersInFirstPipelineStage, split.numLayersInLastPipelineStage) = (1, 2) }
        try split.validate(tensorParallelSize: tp, pipelineParallelSize: pp)
        let config = split
        let whole = try TensorParallelTests.WholeModel(config)
        let failures = TensorParallelTests.Failures()
        try InProcessWorld(size: pp * tp).run { world in
            let groups = try ProcessGroups(world: world, state: ParallelState(worldSize: pp * tp, tensorModelParallelSize: tp,
                                                                             pipelineModelParallelSize: pp))
            let model = try GPTModel(config: config, seed: 7, groups: groups, on: CPUDevice(threads: 1))
            model.sequenceParallel = sequenceParallel
            let stage = model.pipeline, link = groups.pipelineModelParallel
            let batch = try MicroBatch(samples: samples(2, 8), on: model.device)
            let rows = sequenceParallel ? batch.tokens.count / tp : batch.tokens.count
            var input: Tensor?
            if !stage.isFirst {
                let received = try Tensor(shape: [rows, config.hiddenSize], on: model.device)
                try link.receive(into: UnsafeMutableBufferPointer(start: received.floats, count: received.count), from: stage.index - 1, tag: 1)
                input = received
            }
            let activations = try model.forward(batch, input: input, dropout: TensorParallelTests.dropout, training: true)
            var gradOutput: Tensor?
            if stage.isLast {
                whole.check(loss: try model.loss(of: activations, lossWeight: 1).mean, rank: world.rank, failures)
            } else {
                try link.send(UnsafeBufferPointer(start: activations.output.floats, count: activations.output.count), to: stage.index + 1, tag: 1)
                let received = try Tensor(shape: activations.output.shape, on: model.device)
                try link.receive(into: UnsafeMutableBufferPointer(start: received.floats, count: received.count), from: stage.index + 1, tag: 2)
                gradOutput = received
            }
            if let gradInput = try model.backward(activations, gradOutput: gradOutput) {
                try link.send(UnsafeBufferPointer(start: gradInput.floats, count: gradInput.count), to: stage.index - 1, tag: 2)
            }
            try model.reduceSequenceParallelGradients()
            try model.reduceSharedEmbeddingGradients()
            try whole.check(model, rank: world.rank, failures)
        }
        #expect(failures.messages.isEmpty, "\(name), PP=\(pp), TP=\(tp)\(sequenceParallel ? " SP" : ""): \(failures.messages.prefix(5))")
    }
}
