import MegatronCore
import MegatronParallel

/// A model's tensor-parallel group, and the communication of Megatron's parallel layers over it.
///
/// A column-parallel layer (QKV, fc1, the output layer) holds a chunk of the output features and
/// takes the whole input; a row-parallel layer (linear_proj, fc2) holds the matching chunk of the
/// input features and produces a partial sum of the whole output. Megatron's conjugate operators
/// join them: f at a column-parallel input (identity forward, all-reduce of the input gradient
/// backward) and g at a row-parallel output (all-reduce forward, identity backward), which
/// `ColumnParallelLinear`, `RowParallelLinear` and `VocabParallelEmbedding` apply through `reduce`
/// and `gather` here. With a group of one rank nothing moves.
///
/// Under sequence parallelism (Megatron's --sequence-parallel) the activations between those layers
/// (norms, dropout, residuals) are split by rows: rank r holds rows r·T/t ..< (r+1)·T/t of the T
/// token rows. g then reduce-scatters the rows and f all-gathers them (and in the backward the
/// reverse): `reduce` and `gather` do the one or the other as the pass's `RowShard` asks.
public struct TensorParallel: Sendable {
    public let group: any Communicator

    public init(group: any Communicator) { self.group = group }

    public var rank: Int { group.rank }
    public var size: Int { group.size }

    /// Sums `tensor` over the group, in place.
    func allReduce(_ tensor: Tensor) throws {
        guard group.size > 1 else { return }
        try group.allReduce(UnsafeMutableBufferPointer(start: tensor.floats, count: tensor.count), op: .sum)
    }

    /// g forward, or f backward: the sum over the group of `partial` [T, h]; with `scatteringRows`
    /// (sequence parallelism) only this rank's rows of it, [T/t, h].
    func reduce(_ partial: Tensor, scatteringRows: Bool, on device: CPUDevice) throws -> Tensor {
        guard group.size > 1 else { return partial }
        guard scatteringRows else {
            try allReduce(partial)
            return partial
        }
        try group.reduceScatter(UnsafeMutableBufferPointer(start: partial.floats, count: partial.count), op: .sum)
        let rows = partial.rows / group.size, columns = partial.columns
        let shard = try Tensor(shape: [rows, columns], on: device, zeroed: false)
        shard.floats.update(from: partial.floats + group.rank * rows * columns, count: rows * columns)
        return shard
    }

    /// f forward, or g backward, under sequence parallelism: every rank's rows [T/t, h] joined into
    /// [T, h]; without it, `shard` itself.
    func gather(_ shard: Tensor, sequenceParallel: Bool, on device: CPUDevice) throws -> Tensor {
        guard group.size > 1, sequenceParallel else { return shard }
        let whole = try Tensor(shape: [shard.rows * group.size, shard.columns], on: device, zeroed: false)
        (whole.floats + group.rank * shard.count).update(from: shard.floats, count: shard.count)
        try group.allGather(UnsafeMutableBufferPointer(start: whole.floats, count: whole.count))
        return whole
    }

    /// The whole of a tensor split by columns over the group: [rows, size·columns] from each rank's
    /// [rows, columns], rank r's at columns r·columns ..< (r+1)·columns (logits over the vocabulary).
    func gatherColumns(_ local: Tensor, on device: CPUDevice) throws -> Tensor {
        guard group.size > 1 else { return local }
        let rows = local.rows, columns = local.columns, t = group.size
        let gathered = try Tensor(shape: [t, rows, columns], on: device, zeroed: false)
        (gathered.floats + group.rank * rows * columns).update(from: local.floats, count: rows * columns)
        try group.allGather(UnsafeMutableBufferPointer(start: gathered.floats, count: gathered.count))
        let whole = try Tensor(shape: [rows, t * columns], on: device, zeroed: false)
        for r in 0 ..< t {
            for row in 0 ..< rows {
                (whole.floats + row * t * columns + r * columns).update(from: gathered.floats + (r * rows + row) * columns, count: columns)
            }
        }
        return whole
    }
}

/// The rows of the [T, h] activations between the tensor-parallel layers that a rank holds: all of
/// them, or under sequence parallelism its T/t starting at `first`. Chosen per pass: training and
/// evaluation split them under --sequence-parallel, logits and the key/value cache never do.
struct RowShard {
    let sequenceParallel: Bool
    let first: Int

    static let all = RowShard(sequenceParallel: false, first: 0)
}
