import MegatronCore

/// One of the model's normalisations (input_layernorm, pre_mlp_layernorm, final_layernorm):
/// LayerNorm y = (x − μ)/σ·w + b or RMSNorm y = x/rms(x)·w, over the last dimension of x [T, h].
/// Replicated on every tensor-parallel rank; under sequence parallelism each rank normalises its
/// rows, so its weight and bias gradients cover only those (finalize_model_grads sums them).
struct Norm {
    /// What the backward needs besides the input: per-row statistics.
    enum Saved {
        /// Mean and reciprocal standard deviation, [T] each.
        case layerNorm(LayerNorm.Saved)
        /// Reciprocal root mean square [T].
        case rmsNorm(rstd: Tensor)
    }

    let kind: TransformerConfig.Normalization
    let epsilon: Float
    let weight: Parameter
    /// LayerNorm's bias; RMSNorm has none.
    let bias: Parameter?
    let device: CPUDevice

    /// y [T, h] and the statistics its backward needs.
    func forward(_ x: Tensor) throws -> (Tensor, Saved) {
        switch kind {
        case .layerNorm:
            let (y, saved) = try LayerNorm.forward(x, weight: weight.value, bias: bias?.value, epsilon: epsilon, on: device)
            return (y, .layerNorm(saved))
        case .rmsNorm:
            let (y, rstd) = try RMSNorm.forward(x, weight: weight.value, epsilon: epsilon, on: device)
            return (y, .rmsNorm(rstd: rstd))
        }
    }

    /// dx [T, h], added into `accumulatingInto` when given (the residual branch's gradient); the
    /// weight and bias gradients accumulate.
    func backward(_ dy: Tensor, input: Tensor, saved: Saved, accumulatingInto dx: Tensor? = nil) throws -> Tensor {
        switch saved {
        case .layerNorm(let s):
            return try LayerNorm.backward(dy, input: input, weight: weight.value, saved: s, gradWeight: weight.gradient,
                                          gradBias: bias?.gradient, accumulatingInto: dx, on: device)
        case .rmsNorm(let rstd):
            return try RMSNorm.backward(dy, input: input, weight: weight.value, rstd: rstd, gradWeight: weight.gradient,
                                        accumulatingInto: dx, on: device)
        }
    }
}
