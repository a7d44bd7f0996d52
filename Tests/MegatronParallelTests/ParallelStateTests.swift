import MegatronParallel
import Testing

@Suite struct ParallelStateTests {
    /// The example in the documentation of Megatron's initialize_model_parallel.
    @Test func sixteenRanksTensorTwoPipelineFourMatchMegatronsExample() throws {
        let state = try ParallelState(worldSize: 16, tensorModelParallelSize: 2, pipelineModelParallelSize: 4)
        #expect(state.dataParallelSize == 2)
        #expect(state.dataParallelGroups == [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9, 11], [12, 14], [13, 15]])
        #expect(state.tensorModelParallelGroups == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15]])
        #expect(state.pipelineModelParallelGroups == [[0, 4, 8, 12], [1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15]])
        #expect(state.modelParallelGroups == [[0, 1, 4, 5, 8, 9, 12, 13], [2, 3, 6, 7, 10, 11, 14, 15]])
        #expect(state.embeddingGroups == [[0, 12], [1, 13], [2, 14], [3, 15]])
    }

    @Test func rankOrderIsTensorContextDataPipeline() throws {
        let state = try ParallelState(worldSize: 24, tensorModelParallelSize: 2, pipelineModelParallelSize: 3, contextParallelSize: 2)
        #expect(state.dataParallelSize == 2)
        for rank in 0 ..< 24 {
            let c = state.coordinates(of: rank)
            #expect(c == [rank % 2, rank / 2 % 2, rank / 4 % 2, rank / 8], "rank \(rank)")
            #expect(state.rank(at: c) == rank)
        }
        #expect(state.contextParallelGroups.first == [0, 2])
        #expect(state.dataParallelGroupsWithContext.first == [0, 2, 4, 6])
        // Every dimension's groups partition the world.
        for groups in [state.tensorModelParallelGroups, state.dataParallelGroups, state.pipelineModelParallelGroups,
                       state.contextParallelGroups, state.modelParallelGroups] {
            #expect(groups.flatMap { $0 }.sorted() == Array(0 ..< 24), "\(groups)")
        }
    }

    @Test func indivisibleWorldNamesTheFlags() {
        let error = #expect(throws: (any Error).self) { try ParallelState(worldSize: 6, tensorModelParallelSize: 4) }
        if let error {
            #expect("\(error)".contains("--tensor-model-parallel-size 4"), "\(error)")
        }
        #expect(throws: (any Error).self) { try ParallelState(worldSize: 4, pipelineModelParallelSize: 0) }
    }
}
