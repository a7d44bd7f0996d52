import MegatronCore

/// A model the training loop runs (`Trainer`): the rank's part of the network (`MegatronModule`)
/// with what Megatron's pretraining scripts give its loop, the batch builder and the forward step
/// with its loss function (pretrain_gpt.py's, pretrain_bert.py's), split into the stage steps a
/// pipeline schedule calls.
public protocol PretrainingModel: MegatronModule {
    associatedtype Architecture: ModelArchitecture
    /// One sample as the training data gives it.
    associatedtype Sample
    /// The micro-batch a forward runs on.
    associatedtype Batch
    /// What a stage's backward needs from its forward over one micro-batch.
    associatedtype StageActivations

    var config: Architecture { get }
    /// The names of the losses `reportedLosses` gives, in its order (known on every pipeline stage).
    var reportedLossNames: [String] { get }

    /// The micro-batch of `samples`.
    func microBatch(of samples: [Sample]) throws -> Batch
    /// The forward of this stage's model chunk `modelChunk` (0 but under the interleaved schedule,
    /// see `PipelineStage`) over `batch`: from its tokens on the first virtual stage, else from
    /// `input`, the previous one's output. `training` keeps what the backward needs and applies
    /// dropout. `parametersNeeded` gets each span of `parameters` before the forward first reads it
    /// (Megatron's forward pre-hook, where an overlapped parameter all-gather is waited for).
    func forward(_ batch: Batch, input: Tensor?, modelChunk: Int, dropout: DropoutKey, training: Bool,
                 parametersNeeded: ((Range<Int>) throws -> Void)?) throws -> StageActivations
    /// The stage's output, which goes to the next stage (on the last stage, its logits).
    func stageOutput(of activations: StageActivations) -> Tensor
    /// On the last stage: the losses to report of the micro-batch, the first the one a non-finite value
    /// of which stops a run. With `lossWeight` (training) the logits are overwritten by the gradient
    /// of lossWeight · (the loss trained) for `backward`.
    func reportedLosses(of activations: StageActivations, lossWeight: Float?) throws -> [ReportedLoss]
    /// The backward of the model chunk and micro-batch of `activations`, adding into `gradients`:
    /// `gradOutput` is the gradient of its output from the next virtual stage (none on the last). `gradientsReady` gets each span of `gradients`
    /// once backward has finished adding to it. Returns the gradient of the stage's input for the
    /// previous stage, nil on the first. It consumes `activations`, so that it can release what it
    /// no longer needs (the logits' gradient once the output layer's backward is done).
    func backward(_ activations: consuming StageActivations, gradOutput: Tensor?, gradientsReady: ((Range<Int>) throws -> Void)?) throws -> Tensor?
    /// The shape of the hidden states that pass between pipeline stages for a micro-batch of `tokens` tokens.
    func hiddenStatesShape(tokens: Int) -> [Int]
    /// Model FLOPs of one training iteration over `samples` sequences of `sequenceLength` tokens
    /// (forward and backward, Megatron's num_floating_point_operations), for the throughput it logs.
    func flopsPerIteration(samples: Int, sequenceLength: Int) -> Double
}
