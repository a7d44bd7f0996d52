/// One rank's communicators for each group of the `ParallelState` grid that contains it, split
/// from the world communicator. Creating them is collective: every rank of the world must do it.
///
/// The one parallel context of a run (Megatron's process-group collection, as a value): the model,
/// data parallelism, the optimizer and the trainer all take their groups from it. A group of one
/// rank stands where a dimension is not split, so no caller tests for a missing group.
public struct ProcessGroups: Sendable {
    public let state: ParallelState
    /// This rank in the world.
    public let rank: Int
    public let world: any Communicator
    public let tensorModelParallel: any Communicator
    public let pipelineModelParallel: any Communicator
    public let dataParallel: any Communicator
    public let contextParallel: any Communicator
    public let dataParallelWithContext: any Communicator
    public let modelParallel: any Communicator

    public init(world: any Communicator, state: ParallelState) throws {
        guard world.size == state.worldSize else {
            throw CommunicatorError("parallel state for \(state.worldSize) ranks given a world of \(world.size)")
        }
        self.state = state
        self.world = world
        rank = world.rank
        func split(_ dimensions: Set<ParallelState.Dimension>) throws -> any Communicator {
            let members = state.group(varying: dimensions, containing: world.rank)
            return try world.split(color: state.groupIndex(varying: dimensions, of: world.rank),
                                   key: members.firstIndex(of: world.rank)!)
        }
        tensorModelParallel = try split([.tensor])
        pipelineModelParallel = try split([.pipeline])
        dataParallel = try split([.data])
        contextParallel = try split([.context])
        dataParallelWithContext = try split([.data, .context])
        modelParallel = try split([.tensor, .pipeline])
    }

    /// The groups of a run of one rank (no parallelism): a one-rank world split into one-rank groups.
    public static func single() throws -> ProcessGroups {
        try ProcessGroups(world: InProcessWorld(size: 1).communicator(rank: 0), state: ParallelState(worldSize: 1))
    }

    /// Megatron's "last rank": the one that prints the training log.
    public var isLastRank: Bool { rank == state.worldSize - 1 }
}
