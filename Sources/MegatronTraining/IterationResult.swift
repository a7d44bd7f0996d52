import MegatronModels

/// What one iteration produced.
public struct IterationResult: Sendable {
    public let iteration: Int
    /// The first reported loss (the lm loss).
    public let loss: Float
    /// Every loss the model reports (`PretrainingModel.reportedLosses`), over the global batch.
    public var losses: [ReportedLoss]
    /// The gradient norm before clipping: NaN when the loss scaler found the gradients overflowed
    /// and none was computed.
    public let gradNorm: Double
    public let learningRate: Double
    public let skipped: Bool
    public let seconds: Double
    /// Seconds the gradient reductions took, and how long the training thread waited for them
    /// after backward (less than the first when they overlapped backward).
    public var gradSyncSeconds = 0.0, gradSyncWaitSeconds = 0.0
    /// Seconds the all-gather of the parameters this iteration's forward read took (under the
    /// distributed optimizer, after the previous step), and how long the training thread waited
    /// for it (less than the first under --overlap-param-gather).
    public var paramGatherSeconds = 0.0, paramGatherWaitSeconds = 0.0
    /// Seconds the forward and backward of the iteration's micro-batches took (the pipeline schedule).
    public var forwardBackwardSeconds = 0.0
    /// Seconds the pipeline schedule spent exchanging activations and gradients with the other
    /// stages, waiting for them included: with little to transfer, the pipeline bubble.
    public var pipelineCommunicationSeconds = 0.0

    public init(iteration: Int, loss: Float, gradNorm: Double, learningRate: Double, skipped: Bool, seconds: Double) {
        self.iteration = iteration
        self.loss = loss
        losses = [ReportedLoss("lm loss", sum: Double(loss), count: 1)]
        self.gradNorm = gradNorm
        self.learningRate = learningRate
        self.skipped = skipped
        self.seconds = seconds
    }
}
