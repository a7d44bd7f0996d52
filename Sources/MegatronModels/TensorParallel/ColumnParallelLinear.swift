import MegatronCore

/// Megatron's ColumnParallelLinear: Y = X·Wᵀ + b with W [out, in] split by output features over the
/// tensor-parallel group: rank r holds W's rows r·out/t ..< (r+1)·out/t, [out/t, in] (and those of b),
/// and computes those columns of Y [T, out/t] from the whole input X [T, in].
///
/// Its communication is Megatron's f operator at the input: the forward takes the whole input (under
/// sequence parallelism, all-gathered from the rows each rank holds, `gatherInput`); the backward
/// sums ∂X, a partial sum over each rank's features, over the group (all-reduce, or under sequence
/// parallelism a reduce-scatter to this rank's rows).
///
/// With `skipBiasAdd` (Megatron's skip_bias_add) the bias is neither added nor differentiated here: a
/// fused consumer (bias-GELU) does both.
struct ColumnParallelLinear {
    let weight: Parameter
    let bias: Parameter?
    let skipBiasAdd: Bool
    let tensorParallel: TensorParallel
    let device: CPUDevice

    /// f forward: every row [T, in] of an input of which this rank holds `rows`.
    func gatherInput(_ x: Tensor, _ rows: RowShard) throws -> Tensor {
        try tensorParallel.gather(x, sequenceParallel: rows.sequenceParallel, on: device)
    }

    /// Y [T, out/t] = X·Wᵀ (+ b) of the whole input X [T, in] (`gatherInput`'s), in `outputDType`.
    func forward(_ x: Tensor, outputDType: DType = .float32) throws -> Tensor {
        try Linear.forward(x, weight: weight.value, bias: skipBiasAdd ? nil : bias?.value, outputDType: outputDType, on: device)
    }

    /// Accumulates ∂W += ∂Yᵀ·X (and ∂b += Σ_rows ∂Y unless skipped) and returns ∂X summed over the
    /// group: [T, in], or this rank's rows of it under sequence parallelism.
    func backward(_ dy: Tensor, input x: Tensor, rows: RowShard) throws -> Tensor {
        let partial = try Linear.backward(dy, input: x, weight: weight, gradBias: skipBiasAdd ? nil : bias?.gradient, on: device)
        return try tensorParallel.reduce(partial, scatteringRows: rows.sequenceParallel, on: device)
    }
}
