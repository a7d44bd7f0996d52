import MegatronCore

/// Megatron's grid of ranks: the world split into tensor- (tp), context- (cp), data- (dp) and
/// pipeline-parallel (pp) coordinates, in Megatron's default order "tp-cp-ep-dp-pp" (tensor
/// fastest, expert parallelism 1):
///
///     rank = tp + TP·(cp + CP·(dp + DP·pp)),   DP = world / (TP·PP·CP)
///
/// A group varies some coordinates and fixes the rest. For 16 ranks, TP=2, PP=4 (DP=2) this gives
/// the groups of Megatron's parallel_state.py example: tensor [0,1] [2,3] …, data [0,2] [1,3] [4,6] …,
/// pipeline [0,4,8,12] [1,5,9,13] …. A plain value; each rank holds its own copy.
public struct ParallelState: Sendable, Equatable {
    /// The grid's dimensions, fastest-varying first.
    public enum Dimension: Int, Sendable, CaseIterable { case tensor, context, data, pipeline }

    public let worldSize: Int
    public let tensorModelParallelSize: Int
    public let contextParallelSize: Int
    public let dataParallelSize: Int
    public let pipelineModelParallelSize: Int

    /// The grid for `worldSize` ranks (--tensor-model-parallel-size, --pipeline-model-parallel-size,
    /// --context-parallel-size); the data-parallel size is what remains.
    public init(worldSize: Int, tensorModelParallelSize: Int = 1, pipelineModelParallelSize: Int = 1,
                contextParallelSize: Int = 1) throws {
        for (flag, value) in [("--tensor-model-parallel-size", tensorModelParallelSize),
                              ("--pipeline-model-parallel-size", pipelineModelParallelSize),
                              ("--context-parallel-size", contextParallelSize)] where value < 1 {
            throw ConfigError(flag: flag, "\(flag) \(value): expected at least 1")
        }
        let modelParallel = tensorModelParallelSize * pipelineModelParallelSize * contextParallelSize
        guard worldSize >= 1, worldSize % modelParallel == 0 else {
            throw ConfigError(flag: "--tensor-model-parallel-size", "world size \(worldSize) is not divisible by --tensor-model-parallel-size "
                                    + "\(tensorModelParallelSize) × --pipeline-model-parallel-size \(pipelineModelParallelSize) "
                                    + "× --context-parallel-size \(contextParallelSize)")
        }
        self.worldSize = worldSize
        self.tensorModelParallelSize = tensorModelParallelSize
        self.pipelineModelParallelSize = pipelineModelParallelSize
        self.contextParallelSize = contextParallelSize
        dataParallelSize = worldSize / modelParallel
    }

    /// The size of each dimension, in `Dimension` order.
    public var sizes: [Int] { [tensorModelParallelSize, contextParallelSize, dataParallelSize, pipelineModelParallelSize] }

    /// The coordinates of `rank`, in `Dimension` order.
    public func coordinates(of rank: Int) -> [Int] {
        var rest = rank
        return sizes.map { size in
            defer { rest /= size }
            return rest % size
        }
    }

    /// The rank at `coordinates` (in `Dimension` order).
    public func rank(at coordinates: [Int]) -> Int {
        zip(coordinates, sizes).reversed().reduce(0) { $0 * $1.1 + $1.0 }
    }

    public func coordinate(_ dimension: Dimension, of rank: Int) -> Int { coordinates(of: rank)[dimension.rawValue] }

    /// Every group that varies `dimensions` and fixes the others, each in ascending rank order;
    /// the groups are ordered by their fixed coordinates, fastest dimension first.
    public func groups(varying dimensions: Set<Dimension>) -> [[Int]] {
        var groups: [Int: [Int]] = [:]
        for rank in 0 ..< worldSize { groups[groupIndex(varying: dimensions, of: rank), default: []].append(rank) }
        return groups.keys.sorted().map { groups[$0]! }
    }

    /// The group varying `dimensions` that contains `rank`.
    public func group(varying dimensions: Set<Dimension>, containing rank: Int) -> [Int] {
        let index = groupIndex(varying: dimensions, of: rank)
        return (0 ..< worldSize).filter { groupIndex(varying: dimensions, of: $0) == index }
    }

    /// The index of `rank`'s group among `groups(varying:)`: its fixed coordinates as a mixed-radix number.
    func groupIndex(varying dimensions: Set<Dimension>, of rank: Int) -> Int {
        let c = coordinates(of: rank)
        return Dimension.allCases.reversed().reduce(0) { index, d in
            dimensions.contains(d) ? index : index * sizes[d.rawValue] + c[d.rawValue]
        }
    }

    public var tensorModelParallelGroups: [[Int]] { groups(varying: [.tensor]) }
    public var pipelineModelParallelGroups: [[Int]] { groups(varying: [.pipeline]) }
    public var dataParallelGroups: [[Int]] { groups(varying: [.data]) }
    public var contextParallelGroups: [[Int]] { groups(varying: [.context]) }
    /// Data- and context-parallel together: the ranks that hold the same weights.
    public var dataParallelGroupsWithContext: [[Int]] { groups(varying: [.data, .context]) }
    /// Tensor- and pipeline-parallel together: the ranks that hold one copy of the model.
    public var modelParallelGroups: [[Int]] { groups(varying: [.tensor, .pipeline]) }
    /// The first and last stage of each pipeline (they share the tied word embedding).
    public var embeddingGroups: [[Int]] {
        pipelineModelParallelGroups.map { $0.count == 1 ? $0 : [$0.first!, $0.last!] }
    }
}
