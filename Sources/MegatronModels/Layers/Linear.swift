import MegatronCore

/// The GEMMs of a linear layer y = x·Wᵀ + b, W [out, in] (PyTorch's and Megatron's layout), with no
/// communication: the local part of `ColumnParallelLinear` and `RowParallelLinear`. A weight or
/// gradient stored in 16 bits (the vocabulary-sized tables under 16-bit parameter storage) goes
/// through `StoredWeightGEMM`.
enum Linear {
    /// x [T, in] → y [T, out], plus the bias when given; y in `outputDType`, which may be 16 bits only
    /// for a 16-bit weight (the logits under 16-bit storage).
    static func forward(_ x: Tensor, weight: Tensor, bias: Tensor?, outputDType: DType = .float32, on device: CPUDevice) throws -> Tensor {
        guard outputDType == .float32 || (weight.dtype != .float32 && bias == nil) else {
            throw TensorError("Linear.forward: a \(outputDType) output needs a 16-bit weight (not \(weight.dtype)) and no bias")
        }
        let y = weight.dtype == .float32 ? try GEMM.matmul(x, weight, transposeB: true, on: device)
            : try StoredWeightGEMM.forward(x, weight: weight, outputDType: outputDType, on: device)
        if let bias { try Elementwise.addBias(y, bias, on: device) }
        return y
    }

    /// dx = dy·W [T, in]; dW += dyᵀ·x; db += Σ_rows dy when `gradBias` is given. dy is fp32, or 16
    /// bits for a 16-bit weight.
    static func backward(_ dy: Tensor, input x: Tensor, weight: Parameter, gradBias: Tensor?, on device: CPUDevice) throws -> Tensor {
        guard dy.dtype == .float32 || gradBias == nil else { throw TensorError("Linear.backward: a \(dy.dtype) ∂Y with a bias") }
        if weight.gradient.dtype == .float32, dy.dtype == .float32 {
            try GEMM.matmul(dy, transposeA: true, x, into: weight.gradient, beta: 1, on: device)
        } else {
            try StoredWeightGEMM.accumulateWeightGradient(dy, input: x, into: weight.gradient, on: device)
        }
        if let gradBias { try Elementwise.accumulateColumnSums(of: dy, into: gradBias, on: device) }
        return weight.value.dtype == .float32 ? try GEMM.matmul(dy, weight.value, on: device)
            : try StoredWeightGEMM.inputGradient(dy, weight: weight.value, on: device)
    }
}
