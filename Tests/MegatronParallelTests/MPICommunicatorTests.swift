import Foundation
import Testing

extension MPITests {
    /// Runs the conformance suite on MPI: `mpirun -np N communicator-conformance`, built beside this
    /// test bundle. Needs OpenMPI's mpirun (scripts/setup.sh installs it); MPITests skips it without.
    @Suite struct MPICommunicatorTests {
        @Test func conformanceUnderMPIRunWithTwoAndFourProcesses() throws {
            for processes in [2, 4] {
                let (status, output) = try MPIRun.run(processes: processes, executable: "communicator-conformance", arguments: [])
                #expect(status == 0, "\(output)")
                for rank in 0 ..< processes {
                    #expect(output.contains("rank \(rank) of \(processes):"), "rank \(rank) did not report:\n\(output)")
                }
            }
        }
    }
}
