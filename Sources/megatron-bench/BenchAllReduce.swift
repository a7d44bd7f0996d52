import ArgumentParser
import CMPI
import Foundation
import MegatronParallel

/// `mpirun -np N megatron-bench allreduce`: bus bandwidth of our MPI all-reduce against a raw
/// MPI_Allreduce on the same buffer in the same program, message sizes 4 KiB to 64 MiB.
/// Bus bandwidth is NCCL-tests': bytes · 2(n−1)/n ÷ time, time the slowest rank's mean. Our
/// reduce-scatter and all-gather (what the distributed optimizer uses) are timed on the same
/// buffers; their bus bandwidth is bytes · (n−1)/n ÷ time.
struct BenchAllReduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce", abstract: "All-reduce bus bandwidth: MPICommunicator vs raw MPI_Allreduce (run under mpirun).")

    @Option(help: "Timed repeats per size (fewer for sizes above 4 MiB).") var repeats = 20

    func validate() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats \(repeats): expected at least 1") }
    }

    func run() throws {
        guard MPICommunicator.launchedByMPIRun else { throw ValidationError("run under mpirun: mpirun -np 2 megatron-bench allreduce") }
        let world = try MPICommunicator.world()
        defer { MPICommunicator.finalize() }
        let n = world.size
        var table = TablePrinter("bytes", "ours (ms)", "raw MPI (ms)", "ours busbw (GB/s)", "raw busbw (GB/s)", "ours / raw",
                                 "reduce-scatter busbw", "all-gather busbw")
        for exponent in stride(from: 12, through: 26, by: 2) {
            let bytes = 1 << exponent, count = bytes / 4
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
            defer { buffer.deallocate() }
            buffer.initialize(repeating: 1)
            let runs = bytes > 4 << 20 ? max(3, repeats / 4) : repeats
            // Alternate the two so that drift on a busy machine hits both alike.
            var ours = 0.0, raw = 0.0
            for _ in 0 ..< runs + 1 {
                ours += try timed(world) { try world.allReduce(buffer, op: .sum) }
                raw += try timed(world) {
                    MPI_Allreduce(mg_mpi_in_place(), buffer.baseAddress, Int32(count), mg_mpi_float(), mg_mpi_sum(), mg_mpi_comm_world())
                }
            }
            // The first round of each is a warm-up: measure again without it.
            ours = 0; raw = 0
            for _ in 0 ..< runs {
                ours += try timed(world) { try world.allReduce(buffer, op: .sum) }
                raw += try timed(world) {
                    MPI_Allreduce(mg_mpi_in_place(), buffer.baseAddress, Int32(count), mg_mpi_float(), mg_mpi_sum(), mg_mpi_comm_world())
                }
            }
            var scatter = 0.0, gather = 0.0
            for _ in 0 ..< runs {
                scatter += try timed(world) { try world.reduceScatter(buffer, op: .sum) }
                gather += try timed(world) { try world.allGather(buffer) }
            }
            let oursTime = try world.allReduce(ours / Double(runs), op: .max), rawTime = try world.allReduce(raw / Double(runs), op: .max)
            let scatterTime = try world.allReduce(scatter / Double(runs), op: .max)
            let gatherTime = try world.allReduce(gather / Double(runs), op: .max)
            let factor = Double(bytes) * 2 * Double(n - 1) / Double(n)
            table.add(String(bytes), fixed(oursTime * 1e3, 3), fixed(rawTime * 1e3, 3), fixed(factor / oursTime / 1e9, 2),
                      fixed(factor / rawTime / 1e9, 2), percent(rawTime / oursTime),
                      fixed(factor / 2 / scatterTime / 1e9, 2), fixed(factor / 2 / gatherTime / 1e9, 2))
        }
        if world.rank == 0 {
            print("megatron-bench allreduce — \(n) ranks, fp32 sum in place, mean of the slowest rank\n" + table.render())
        }
    }

    /// Seconds `body` takes on this rank, started together after a barrier.
    private func timed(_ world: MPICommunicator, _ body: () throws -> Void) throws -> Double {
        try world.barrier()
        let start = Timing.now()
        try body()
        return Timing.now() - start
    }
}
