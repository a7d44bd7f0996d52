import CommunicatorConformance
import Foundation
import MegatronParallel

// Runs the communicator conformance suite on MPI's world: `mpirun -np 4 communicator-conformance`.
// Prints one line per rank; a failing rank prints the failed check and aborts the job.
do {
    let world = try MPICommunicator.world()
    var suite = CommunicatorConformance(world: world)
    try suite.run()
    print("rank \(world.rank) of \(world.size): \(suite.checks) checks passed")
    MPICommunicator.finalize()
} catch {
    FileHandle.standardError.write(Data("communicator-conformance: \(error)\n".utf8))
    MPICommunicator.abort(code: 1)
}
