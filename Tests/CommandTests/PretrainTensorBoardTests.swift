import Foundation
import Testing

/// --tensorboard-dir and its flags through the binary: the event file holds the tags they ask for.
@Suite struct PretrainTensorBoardTests {
    static func tags(_ flags: [String]) throws -> (output: String, events: String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pretrain-tensorboard-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let run = PretrainFlagTests.validRun + ["--tensorboard-dir", directory.path, "--eval-iters", "1", "--eval-interval", "1"] + flags
        let (status, output) = try PretrainFlagTests.megatron(run)
        #expect(status == 0, "\(output)")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        #expect(files.count == 1 && files[0].hasPrefix("events.out.tfevents."), "\(files)")
        let events = files.first.flatMap { try? Data(contentsOf: directory.appendingPathComponent($0)) } ?? Data()
        return (output, String(decoding: events, as: UTF8.self))
    }

    @Test func theFlagsChooseTheScalars() throws {
        let plain = try Self.tags([])
        #expect(plain.output.contains("> writing TensorBoard events to"), "\(plain.output)")
        for tag in ["learning-rate vs samples", "lm loss vs samples", "loss-scale", "grad-norm", "lm loss validation"] {
            #expect(plain.events.contains(tag), "\(tag)")
        }
        for tag in ["world-size", "iteration-time", "throughput", "validation ppl", "params-norm"] { #expect(!plain.events.contains(tag), "\(tag)") }
        let chosen = try Self.tags(["--no-log-loss-scale-to-tensorboard", "--log-world-size-to-tensorboard", "--log-timers-to-tensorboard",
                                    "--log-throughput", "--log-validation-ppl-to-tensorboard", "--log-params-norm"])
        #expect(!chosen.events.contains("loss-scale"))
        for tag in ["world-size", "iteration-time", "throughput", "lm loss validation ppl", "params-norm"] {
            #expect(chosen.events.contains(tag), "\(tag)")
        }
    }

    @Test func aZeroLogIntervalIsRejected() throws {
        let (status, output) = try PretrainFlagTests.megatron(PretrainFlagTests.validRun + ["--tensorboard-log-interval", "0"])
        #expect(status == 64 && output.contains("--tensorboard-log-interval 0: expected at least 1"), "\(output)")
    }
}
