import Foundation
import Testing

extension MPITests {
    /// `megatron pretrain` under mpirun: data-parallel runs reproduce one rank's losses, and a rank
    /// that dies ends the whole job, named, within a bounded time. Needs OpenMPI's mpirun; MPITests
    /// skips it without, and runs its tests one at a time.
    @Suite struct MPIPretrainTests {
        static let tinyRun = ["pretrain", "--mock-data", "--tokenizer-type", "NullTokenizer", "--vocab-size", "256",
                              "--num-layers", "2", "--hidden-size", "32", "--num-attention-heads", "4",
                              "--seq-length", "32", "--max-position-embeddings", "32", "--micro-batch-size", "1",
                              "--global-batch-size", "8", "--lr", "3e-3", "--lr-warmup-iters", "3", "--clip-grad", "0.5",
                              "--hidden-dropout", "0.1", "--attention-dropout", "0.1", "--log-interval", "1", "--threads", "1"]

        /// The lm loss of every logged iteration.
        static func losses(_ output: String) -> [Double] {
            output.split(separator: "\n").compactMap { line in
                guard let range = line.range(of: "lm loss: ") else { return nil }
                return Double(line[range.upperBound...].prefix { $0 != " " && $0 != "|" })
            }
        }

        @Test func dataParallelRunsMatchOneRankOverTwentySteps() throws {
            let steps = ["--train-iters", "20"]
            let (status, output) = try MPIRun.run(processes: nil, executable: "megatron", arguments: Self.tinyRun + steps)
            #expect(status == 0, "\(output)")
            let single = Self.losses(output)
            #expect(single.count == 20, "\(output)")
            for (processes, extra) in [(2, []), (4, ["--overlap-grad-reduce", "--ddp-bucket-size", "4000"]),
                                       (4, ["--use-distributed-optimizer", "--overlap-grad-reduce", "--ddp-bucket-size", "4000"])] {
                let (status, output) = try MPIRun.run(processes: processes, executable: "megatron", arguments: Self.tinyRun + steps + extra)
                #expect(status == 0, "\(output)")
                let losses = Self.losses(output)
                #expect(losses.count == 20, "DP=\(processes) \(extra) logs once per iteration, from the last rank only:\n\(output)")
                for (step, (a, b)) in zip(single, losses).enumerated() {
                    #expect(abs(a - b) <= 1e-5 * abs(a), "DP=\(processes) \(extra): step \(step + 1) loss \(a) vs \(b)")
                }
            }
        }

        /// Tensor (sequence-parallel), pipeline and data parallelism under mpirun, where sends block:
        /// TP=2 × PP=2, PP=2 × DP=2 with the distributed optimizer, PP=4 (1F1B with every warm-up
        /// length), and interleaved PP=2 × 2 chunks × DP=2 give one rank's losses; so do context
        /// parallelism (ring attention) with TP=2 and with DP=2, without attention dropout (the ring has none).
        @Test func modelParallelRunsMatchOneRank() throws {
            let run = Self.tinyRun + ["--num-layers", "4", "--train-iters", "6"]
            let withoutAttentionDropout = run + ["--attention-dropout", "0"]
            for (base, layouts) in [
                (run, [(4, ["--tensor-model-parallel-size", "2", "--sequence-parallel", "--pipeline-model-parallel-size", "2"]),
                       (4, ["--pipeline-model-parallel-size", "2", "--use-distributed-optimizer", "--overlap-grad-reduce"]),
                       (4, ["--pipeline-model-parallel-size", "4"]),
                       (4, ["--pipeline-model-parallel-size", "2", "--num-layers-per-virtual-pipeline-stage", "1"])]),
                (withoutAttentionDropout, [(4, ["--context-parallel-size", "2", "--tensor-model-parallel-size", "2", "--sequence-parallel"]),
                                  (4, ["--context-parallel-size", "2", "--use-distributed-optimizer", "--overlap-grad-reduce"])]),
            ] {
                let (status, output) = try MPIRun.run(processes: nil, executable: "megatron", arguments: base)
                #expect(status == 0, "\(output)")
                let single = Self.losses(output)
                #expect(single.count == 6, "\(output)")
                for (processes, extra) in layouts {
                    let (status, output) = try MPIRun.run(processes: processes, executable: "megatron", arguments: base + extra)
                    #expect(status == 0, "\(output)")
                    let losses = Self.losses(output)
                    #expect(losses.count == 6, "\(extra):\n\(output)")
                    for (step, (a, b)) in zip(single, losses).enumerated() {
                        #expect(abs(a - b) <= 1e-4 * abs(a), "\(extra): step \(step + 1) loss \(a) vs \(b)")
                    }
                }
            }
        }

        /// SIGKILL one of four ranks mid-run: mpirun must end the job non-zero, naming the rank.
        @Test func killingOneRankEndsTheJobAndNamesIt() throws {
            let run = try MPIRun(processes: 4, executable: "megatron", arguments: Self.tinyRun + ["--train-iters", "100000"])
            // Wait until training is under way, then kill rank 2.
            let deadline = Date(timeIntervalSinceNow: 120)
            while !run.output.contains("iteration") && run.process.isRunning && Date() < deadline { usleep(100_000) }
            #expect(run.output.contains("iteration"), "training never started:\n\(run.output)")
            let pid = try #require(run.pid(ofRank: 2), "rank 2's process not found")
            kill(pid, SIGKILL)
            let killed = Date()
            let status = run.wait(timeout: 30)
            #expect(status != nil, "the job still ran 30 s after rank 2 died:\n\(run.output.suffix(2000))")
            #expect(status != 0)
            #expect(Date().timeIntervalSince(killed) < 30)
            #expect(run.output.contains("rank 2"), "the failure does not name rank 2:\n\(run.output.suffix(2000))")
        }

        /// A rank that fails with an error ends the job through MPI_Abort, naming itself and the cause.
        @Test func aRankErrorEndsTheJobAndNamesIt() throws {
            // --data-path to a missing prefix: every rank fails as it opens the dataset.
            let (status, output) = try MPIRun.run(processes: 2, executable: "megatron",
                                                  arguments: Self.tinyRun.filter { $0 != "--mock-data" }
                                                    + ["--data-path", "/nonexistent/prefix", "--train-iters", "5"], timeout: 60)
            #expect(status != 0)
            #expect(output.contains("failed:") && output.contains("/nonexistent/prefix"), "\(output)")
        }
    }
}
