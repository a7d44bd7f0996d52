import MegatronCore

/// The model's normalisation, LayerNorm or RMSNorm, behind one forward/backward pair.
struct Norm {
    enum Saved {
        case layerNorm(LayerNorm.Saved)
        case rmsNorm(rstd: Tensor)
    }

    let kind: GPTConfig.Normalization
    let epsilon: Float

    func forward(_ x: Tensor, weight: Tensor, bias: Tensor?, on device: CPUDevice) throws -> (Tensor, Saved) {
        switch kind {
        case .layerNorm:
            let (y, saved) = try LayerNorm.forward(x, weight: weight, bias: bias, epsilon: epsilon, on: device)
            return (y, .layerNorm(saved))
        case .rmsNorm:
            let (y, rstd) = try RMSNorm.forward(x, weight: weight, epsilon: epsilon, on: device)
            return (y, .rmsNorm(rstd: rstd))
        }
    }

    /// dx, added into `accumulatingInto` when given; parameter gradients accumulate.
    func backward(_ dy: Tensor, input: Tensor, weight: Tensor, saved: Saved, gradWeight: Tensor, gradBias: Tensor?,
                  accumulatingInto dx: Tensor? = nil, on device: CPUDevice) throws -> Tensor {
        switch saved {
        case .layerNorm(let s):
            return try LayerNorm.backward(dy, input: input, weight: weight, saved: s, gradWeight: gradWeight, gradBias: gradBias,
                                          accumulatingInto: dx, on: device)
        case .rmsNorm(let rstd):
            return try RMSNorm.backward(dy, input: input, weight: weight, rstd: rstd, gradWeight: gradWeight,
                                        accumulatingInto: dx, on: device)
        }
    }
}

/// A linear layer y = x·Wᵀ + b with W [out, in] (PyTorch's and Megatron's layout).
enum Linear {
    static func forward(_ x: Tensor, weight: Tensor, bias: Tensor?, on device: CPUDevice) throws -> Tensor {
        let y = try GEMM.matmul(x, weight, transposeB: true, on: device)
        if let bias { try Elementwise.addBias(y, bias, on: device) }
        return y
    }

    /// dx = dy·W; dW += dyᵀ·x; db += Σ_rows dy.
    static func backward(_ dy: Tensor, input x: Tensor, weight: Tensor, gradWeight: Tensor, gradBias: Tensor?,
                         on device: CPUDevice) throws -> Tensor {
        try GEMM.matmul(dy, transposeA: true, x, into: gradWeight, beta: 1, on: device)
        if let gradBias { try Elementwise.accumulateColumnSums(of: dy, into: gradBias, on: device) }
        return try GEMM.matmul(dy, weight, on: device)
    }
}
