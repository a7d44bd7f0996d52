import Foundation
import Testing

/// --save, --exit-interval and --load through the binary, as a user resumes a stopped job: the
/// resumed run's log from iteration 4 on is the uninterrupted run's.
@Suite struct PretrainCheckpointTests {
    static let run = PretrainFlagTests.validRun + ["--train-iters", "6", "--global-batch-size", "2", "--lr-decay-style", "cosine",
                                                    "--lr-warmup-iters", "2", "--hidden-dropout", "0.1", "--eval-iters", "1",
                                                    "--eval-interval", "2"]

    /// The loss lines from iteration 4 on (training and evaluation), without timestamps and timings.
    static func tail(_ output: String) -> [String] {
        let lines = output.split(separator: "\n").map(String.init)
        guard let start = lines.firstIndex(where: { $0.contains("iteration        4/") }) else { return [] }
        return lines[start...].filter { $0.contains("lm loss") }.map { line in
            line.split(separator: "|").filter { !$0.contains("elapsed time") }.map { field in
                field.replacingOccurrences(of: #"\[[^\]]*\] "#, with: "", options: .regularExpression)
            }.joined(separator: "|")
        }
    }

    @Test func aStoppedRunResumesWhereItStopped() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pretrain-checkpoint-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let straight = try PretrainFlagTests.megatron(Self.run)
        #expect(straight.status == 0, "\(straight.output)")
        let stopped = try PretrainFlagTests.megatron(Self.run + ["--save", directory, "--exit-interval", "3"])
        #expect(stopped.status == 0 && stopped.output.contains("exiting program at iteration 3"), "\(stopped.output)")
        #expect(!stopped.output.contains("iteration        4/"), "\(stopped.output)")
        let resumed = try PretrainFlagTests.megatron(Self.run + ["--load", directory])
        #expect(resumed.status == 0 && resumed.output.contains("successfully loaded checkpoint from \(directory) at iteration 3"),
                "\(resumed.output)")
        // Iteration 4 is the resumed run's first log line, so (as Megatron's) its next line averages
        // iterations 4 and 5; every other line, evaluations included, is the uninterrupted run's.
        let expected = Self.tail(straight.output), got = Self.tail(resumed.output)
        #expect(expected.count == 7 && got.count == 7, "\(expected) vs \(got)")
        let notFive = { (lines: [String]) in lines.filter { !$0.contains("iteration        5/") } }
        #expect(notFive(expected) == notFive(got), "\(expected)\nvs\n\(got)")
    }

    @Test func checkpointFlagsThatNeedAnotherAreRejected() throws {
        for (flags, message) in [(["--save-interval", "2"], "--save-interval needs --save"),
                                 (["--finetune"], "--no-load-optim and --finetune need --load"),
                                 (["--exit-interval", "0"], "--exit-interval 0: expected at least 1")] {
            let (status, output) = try PretrainFlagTests.megatron(PretrainFlagTests.validRun + flags)
            #expect(status == 64 && output.contains(message), "\(flags): \(output)")
        }
    }
}
