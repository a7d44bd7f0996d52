import Foundation
import XCTest

/// Runs the conformance suite on MPI: `mpirun -np N communicator-conformance`, built beside this
/// test bundle. Needs OpenMPI's mpirun (scripts/setup.sh installs it).
final class MPICommunicatorTests: XCTestCase {
    func testConformanceUnderMPIRunWithTwoAndFourProcesses() throws {
        for processes in [2, 4] {
            let (status, output) = try MPIRun.run(processes: processes, executable: "communicator-conformance", arguments: [])
            XCTAssertEqual(status, 0, output)
            for rank in 0 ..< processes {
                XCTAssertTrue(output.contains("rank \(rank) of \(processes):"), "rank \(rank) did not report:\n\(output)")
            }
        }
    }
}

