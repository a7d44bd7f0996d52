import CommunicatorConformance
import Foundation
import MegatronParallel
import Testing

@Suite struct InProcessCommunicatorTests {
    @Test func conformanceWithOneToFourRanks() throws {
        for size in 1 ... 4 {
            try InProcessWorld(size: size).run { world in
                var suite = CommunicatorConformance(world: world)
                try suite.run()
            }
        }
    }

    /// A rank that fails releases every other rank from its wait; the error names it.
    @Test func aFailingRankEndsTheWorldAndIsNamed() {
        struct Injected: Error, CustomStringConvertible { var description: String { "injected failure" } }
        let start = Date()
        let error = #expect(throws: (any Error).self) {
            try InProcessWorld(size: 4).run { world in
                if world.rank == 2 { throw Injected() }
                var values = [Float](repeating: 1, count: 8)
                try values.withUnsafeMutableBufferPointer { try world.allReduce($0, op: .sum) }
            }
        }
        if let error {
            #expect((error as? CommunicatorError)?.failedRank == 2, "\(error)")
            #expect("\(error)".contains("rank 2 failed: injected failure"), "\(error)")
        }
        #expect(Date().timeIntervalSince(start) < 30)
    }

    /// A rank that never reaches a collective is named once the timeout passes.
    @Test func aMissingRankTimesOut() {
        let error = #expect(throws: (any Error).self) {
            try InProcessWorld(size: 3, timeoutSeconds: 0.2).run { world in
                if world.rank == 1 { return }
                try world.barrier()
            }
        }
        if let error {
            #expect((error as? CommunicatorError)?.failedRank == 1, "\(error)")
            #expect("\(error)".contains("rank(s) 1 did not arrive"), "\(error)")
        }
    }

    @Test func mismatchedLengthsAreAnErrorOnEveryRank() {
        let error = #expect(throws: (any Error).self) {
            try InProcessWorld(size: 2).run { world in
                var values = [Float](repeating: 1, count: 4 + world.rank)
                try values.withUnsafeMutableBufferPointer { try world.allReduce($0, op: .sum) }
            }
        }
        if let error {
            #expect("\(error)".contains("passed 4 elements but rank 1 passed 5")
                    || "\(error)".contains("passed 5 elements but rank 0 passed 4"), "\(error)")
        }
    }
}
