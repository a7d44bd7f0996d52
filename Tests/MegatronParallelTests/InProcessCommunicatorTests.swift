import CommunicatorConformance
import Foundation
import MegatronParallel
import XCTest

final class InProcessCommunicatorTests: XCTestCase {
    func testConformanceWithOneToFourRanks() throws {
        for size in 1 ... 4 {
            try InProcessWorld(size: size).run { world in
                var suite = CommunicatorConformance(world: world)
                try suite.run()
            }
        }
    }

    /// A rank that fails releases every other rank from its wait; the error names it.
    func testAFailingRankEndsTheWorldAndIsNamed() {
        struct Injected: Error, CustomStringConvertible { var description: String { "injected failure" } }
        let start = Date()
        XCTAssertThrowsError(try InProcessWorld(size: 4).run { world in
            if world.rank == 2 { throw Injected() }
            var values = [Float](repeating: 1, count: 8)
            try values.withUnsafeMutableBufferPointer { try world.allReduce($0, op: .sum) }
        }) { error in
            XCTAssertEqual((error as? CommunicatorError)?.failedRank, 2)
            XCTAssertTrue("\(error)".contains("rank 2 failed: injected failure"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 30)
    }

    /// A rank that never reaches a collective is named once the timeout passes.
    func testAMissingRankTimesOut() {
        XCTAssertThrowsError(try InProcessWorld(size: 3, timeoutSeconds: 0.2).run { world in
            if world.rank == 1 { return }
            try world.barrier()
        }) { error in
            XCTAssertEqual((error as? CommunicatorError)?.failedRank, 1)
            XCTAssertTrue("\(error)".contains("rank(s) 1 did not arrive"), "\(error)")
        }
    }

    func testMismatchedLengthsAreAnErrorOnEveryRank() {
        XCTAssertThrowsError(try InProcessWorld(size: 2).run { world in
            var values = [Float](repeating: 1, count: 4 + world.rank)
            try values.withUnsafeMutableBufferPointer { try world.allReduce($0, op: .sum) }
        }) { error in
            XCTAssertTrue("\(error)".contains("passed 4 elements but rank 1 passed 5")
                          || "\(error)".contains("passed 5 elements but rank 0 passed 4"), "\(error)")
        }
    }
}
