import MegatronCore

/// Megatron's RowParallelLinear: Y = X·Wᵀ + b with W [out, in] split by input features over the
/// tensor-parallel group: rank r holds W's columns r·in/t ..< (r+1)·in/t, [out, in/t], takes the
/// matching columns of X [T, in/t] (a column-parallel layer's output), and X·Wᵀ is its partial sum of
/// Y [T, out].
///
/// Its communication is Megatron's g operator at the output: the forward sums the partial outputs
/// over the group (all-reduce, or under sequence parallelism a reduce-scatter to this rank's rows);
/// the backward takes ∂Y as is (all-gathered from the rows under sequence parallelism).
///
/// The bias is always skipped (Megatron's skip_bias_add): it is replicated, and the bias-dropout-add
/// that follows adds it to the reduced output and accumulates its gradient.
struct RowParallelLinear {
    let weight: Parameter
    let bias: Parameter?
    let tensorParallel: TensorParallel
    let device: CPUDevice

    /// Y [T, out] (without the bias) of X [T, in/t], summed over the group: this rank's rows under
    /// sequence parallelism.
    func forward(_ x: Tensor, rows: RowShard) throws -> Tensor {
        let partial = try GEMM.matmul(x, weight.value, transposeB: true, on: device)
        return try tensorParallel.reduce(partial, scatteringRows: rows.sequenceParallel, on: device)
    }

    /// Accumulates ∂W += ∂Yᵀ·X and returns ∂X [T, in/t] = ∂Y·W, from the gradient of this rank's
    /// `rows` of the output.
    func backward(_ dy: Tensor, input x: Tensor, rows: RowShard) throws -> Tensor {
        let whole = try tensorParallel.gather(dy, sequenceParallel: rows.sequenceParallel, on: device)
        return try Linear.backward(whole, input: x, weight: weight, gradBias: nil, on: device)
    }
}
