import Foundation
import MegatronCore
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
        #expect(stopped.status == 0 && stopped.output.contains("[exiting program at iteration 3] datetime: "), "\(stopped.output)")
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
        for (flags, message) in [(["--override-opt_param-scheduler", "--use-checkpoint-opt_param-scheduler"],
                                  "give only one of --override-opt_param-scheduler and --use-checkpoint-opt_param-scheduler"),
                                 (["--finetune"], "--no-load-optim and --finetune need --load"),
                                 (["--exit-interval", "0"], "--exit-interval 0: expected at least 1")] {
            let (status, output) = try PretrainFlagTests.megatron(PretrainFlagTests.validRun + flags)
            #expect(status == 64 && output.contains(message), "\(flags): \(output)")
        }
    }

    /// import-hf writes a checkpoint at iteration 0 that pretrain --load trains on (its flags must
    /// describe the same network, or the error names what differs); export-hf writes it back.
    @Test func aHuggingFaceModelIsImportedTrainedAndExported() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/hf_gpt2_tiny").path
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hf-import-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = directory.appendingPathComponent("checkpoint").path
        let imported = try PretrainFlagTests.megatron(["import-hf", "--hf-dir", fixture, "--save", checkpoint])
        #expect(imported.status == 0 && imported.output.contains("--num-layers 2 --hidden-size 32 --num-attention-heads 4"),
                "\(imported.output)")
        let run = ["pretrain", "--load", checkpoint, "--save", checkpoint, "--mock-data", "--tokenizer-type", "NullTokenizer",
                   "--vocab-size", "100", "--num-layers", "2", "--hidden-size", "32", "--num-attention-heads", "4",
                   "--max-position-embeddings", "16", "--seq-length", "16", "--micro-batch-size", "1", "--train-iters", "2",
                   "--lr", "1e-4", "--threads", "1", "--eval-iters", "0"]
        let trained = try PretrainFlagTests.megatron(run)
        #expect(trained.status == 0 && trained.output.contains("successfully loaded checkpoint from \(checkpoint) at iteration 0"),
                "\(trained.output)")
        let wrong = try PretrainFlagTests.megatron(run + ["--num-layers", "3"])
        // A checkpoint error: the data is at fault (status 65), not the flags.
        #expect(wrong.status == 65 && wrong.output.contains("num_layers 3 vs 2"), "\(wrong.output)")
        let exported = try PretrainFlagTests.megatron(["export-hf", "--load", checkpoint, "--hf-dir",
                                                       directory.appendingPathComponent("hf").path, "--vocab-size", "100"])
        #expect(exported.status == 0 && exported.output.contains("iter_0000002"), "\(exported.output)")
    }

    /// A Llama-family model (the sharded, grouped-query, untied Llama fixture) crosses the same way:
    /// import-hf prints the pretrain flags of its network (with examples/llama's rotary spellings
    /// accepted beside them), generate continues a prompt as transformers did, pretrain trains and
    /// resumes from it, and export-hf writes a Llama again.
    @Test func aLlamaModelIsImportedGeneratesTrainsResumesAndExports() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/hf_llama_tiny")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hf-llama-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = directory.appendingPathComponent("checkpoint").path
        let imported = try PretrainFlagTests.megatron(["import-hf", "--hf-dir", fixture.path, "--save", checkpoint])
        let printed = imported.output.components(separatedBy: "megatron pretrain --load \(checkpoint) ").last?
            .components(separatedBy: " --make-vocab-size-divisible-by").first ?? ""
        #expect(imported.status == 0 && printed.contains("--num-query-groups 2 --kv-channels 8") && printed.contains("--rotary-base 500000"),
                "\(imported.output)")

        let expected = try SafeTensors.read(fixture.appendingPathComponent("expected.safetensors")).tensors["greedy"]!
        let greedy = expected.data.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }.map(String.init).joined(separator: " ")
        let generated = try GenerateTests.generate(checkpoint, prompt: "5 17 99")
        #expect(generated.status == 0 && generated.output.trimmingCharacters(in: .whitespacesAndNewlines) == greedy, "\(generated.output) vs \(greedy)")

        let run = ["pretrain", "--load", checkpoint, "--save", checkpoint, "--mock-data", "--tokenizer-type", "NullTokenizer",
                   "--vocab-size", "100", "--seq-length", "16", "--micro-batch-size", "1", "--lr", "1e-4", "--threads", "1",
                   "--eval-iters", "0", "--use-mcore-models", "--use-rotary-position-embeddings", "--no-position-embedding",
                   "--no-rope-fusion", "--train-iters", "4"] + printed.split(separator: " ").map(String.init)
        let trained = try PretrainFlagTests.megatron(run + ["--exit-interval", "2"])
        #expect(trained.status == 0 && trained.output.contains("successfully loaded checkpoint from \(checkpoint) at iteration 0"),
                "\(trained.output)")
        let resumed = try PretrainFlagTests.megatron(run)
        #expect(resumed.status == 0 && resumed.output.contains("successfully loaded checkpoint from \(checkpoint) at iteration 2"),
                "\(resumed.output)")
        let scaled = try PretrainFlagTests.megatron(run + ["--use-rope-scaling"])
        #expect(scaled.status == 65 && scaled.output.contains("rope_scaling_factor 8.0 vs none"),
                "\(scaled.output)")

        let hf = directory.appendingPathComponent("hf")
        let exported = try PretrainFlagTests.megatron(["export-hf", "--load", checkpoint, "--hf-dir", hf.path, "--vocab-size", "100"])
        #expect(exported.status == 0 && exported.output.contains("iter_0000004") && exported.output.contains("as llama"), "\(exported.output)")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: hf.appendingPathComponent("config.json"))) as? [String: Any]
        #expect(config?["architectures"] as? [String] == ["LlamaForCausalLM"] && config?["num_key_value_heads"] as? Int == 2)
    }

    /// --skip-train with --load evaluates the checkpoint: the saved run's final validation and test
    /// lines again (the save precedes that evaluation, so it reads the same validation samples).
    @Test func skipTrainEvaluatesTheLoadedCheckpoint() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pretrain-skip-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let evaluations = { (output: String) in output.split(separator: "\n").filter { $0.contains("validation loss at iteration 6 on") } }
        let trained = try PretrainFlagTests.megatron(Self.run + ["--save", directory])
        let evaluated = try PretrainFlagTests.megatron(Self.run + ["--load", directory, "--skip-train"])
        #expect(trained.status == 0 && evaluated.status == 0, "\(trained.output)\n\(evaluated.output)")
        #expect(evaluated.output.contains("skipping training (--skip-train is on)"), "\(evaluated.output)")
        #expect(!evaluated.output.contains("iteration        1/"), "\(evaluated.output)")
        #expect(evaluations(trained.output).count == 2 && evaluations(trained.output) == evaluations(evaluated.output),
                "\(evaluations(trained.output)) vs \(evaluations(evaluated.output))")
    }
}
