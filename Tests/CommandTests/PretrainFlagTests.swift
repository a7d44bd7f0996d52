import Foundation
import MegatronTraining
import Testing

/// `megatron pretrain` as a user runs it: flags that contradict each other, or that Megatron's
/// arguments.py, OptimizerParamScheduler or torch.optim would reject, end the run before anything
/// is built, with exit status 64 and a message naming the flag.
@Suite struct PretrainFlagTests {
    /// A run that is valid as it stands: each case adds or overrides flags (the last value wins).
    static let validRun = ["pretrain", "--mock-data", "--tokenizer-type", "NullTokenizer", "--vocab-size", "64",
                           "--num-layers", "1", "--hidden-size", "16", "--num-attention-heads", "2",
                           "--seq-length", "8", "--max-position-embeddings", "8", "--micro-batch-size", "1",
                           "--train-iters", "2", "--lr", "1e-3", "--threads", "1", "--log-interval", "1"]

    /// The package's build directory, where the test runner and the `megatron` executable live.
    static var productsDirectory: URL {
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = runner.deletingLastPathComponent()
        while directory.pathExtension == "xctest" || directory.lastPathComponent == "Contents" || directory.lastPathComponent == "MacOS" {
            directory = directory.deletingLastPathComponent()
        }
        return directory
    }

    /// Runs `megatron` with `arguments` (and `environment` over this process's); returns its exit status and what it printed.
    static func megatron(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let process = Process(), pipe = Pipe()
        process.executableURL = productsDirectory.appendingPathComponent("megatron")
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    /// Recomputing activations leaves every logged loss and gradient norm as it was.
    @Test func recomputationLeavesTheRunUnchanged() throws {
        let run = Self.validRun + ["--num-layers", "3", "--hidden-dropout", "0.1", "--attention-dropout", "0.1"]
        let plain = try Self.megatron(run)
        for flags in [["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "2"],
                      ["--recompute-activations", "--recompute-modules", "core_attn", "layernorm", "mlp"]] {
            let recomputed = try Self.megatron(run + flags)
            #expect(recomputed.status == 0, "\(flags): \(recomputed.output)")
            for field in ["lm loss", "grad norm"] {
                let a = PretrainModelParallelTests.values(field, in: plain.output)
                #expect(a.count == 2 && a == PretrainModelParallelTests.values(field, in: recomputed.output), "\(flags): \(field)")
            }
        }
    }

    /// Megatron's switches between CUDA kernel implementations (and its nccl backend name) leave a
    /// launch script runnable and the run unchanged.
    @Test func kernelImplementationFlagsChangeNothing() throws {
        let plain = try Self.megatron(Self.validRun)
        let flags = ["--attention-backend", "flash", "--transformer-impl", "local", "--use-mcore-models", "--use-flash-attn",
                     "--attention-softmax-in-fp32", "--no-masked-softmax-fusion", "--no-bias-swiglu-fusion", "--no-bias-dropout-fusion",
                     "--no-rope-fusion", "--no-gradient-accumulation-fusion", "--distributed-backend", "nccl"]
        let flagged = try Self.megatron(Self.validRun + flags)
        #expect(flagged.status == 0, "\(flagged.output)")
        for field in ["lm loss", "grad norm"] {
            let a = PretrainModelParallelTests.values(field, in: plain.output)
            #expect(a.count == 2 && a == PretrainModelParallelTests.values(field, in: flagged.output), "\(field)")
        }
        let wrong = try Self.megatron(Self.validRun + ["--attention-backend", "triton"])
        #expect(wrong.status == 64 && wrong.output.contains("--attention-backend"), "\(wrong.output)")
    }

    /// --fp16 from Megatron's initial loss scale: the first iterations overflow and are skipped, the
    /// log line shows the scale and the count, and training goes on once the scale fits.
    @Test func fp16LogsTheLossScaleAndTheSkippedIterations() throws {
        var run = Self.validRun + ["--fp16"]
        run[run.firstIndex(of: "--train-iters")! + 1] = "40"
        let (status, output) = try Self.megatron(run)
        #expect(status == 0, "\(output)")
        #expect(output.contains("loss scale: 4294967296.0 | number of skipped iterations:   1 | number of nan iterations:   0 |"),
                "\(output)")
        let last = try #require(output.split(separator: "\n").last { $0.contains("iteration       40/") })
        #expect(last.contains("lm loss:") && last.contains("grad norm:") && last.contains("number of skipped iterations:   0"), "\(last)")
        #expect(output.contains("WARNING: Setting args.check_for_nan_in_loss_and_grad to False since dynamic loss scaling is being used"))
    }

    /// Megatron's fp32 optimizer ignores --loss-scale; without clipping its mixed-precision optimizer
    /// reports a grad norm of 0.
    @Test func lossScaleAndGradNormFollowTheOptimizerMegatronBuilds() throws {
        let fp32 = try Self.megatron(Self.validRun + ["--loss-scale", "1024"])
        #expect(fp32.status == 0 && fp32.output.contains("loss scale: 1.0 |"), "\(fp32.output)")
        let bf16 = try Self.megatron(Self.validRun + ["--bf16", "--loss-scale", "1024", "--clip-grad", "0"])
        #expect(bf16.status == 0 && bf16.output.contains("loss scale: 1024.0 | grad norm: 0.000 |"), "\(bf16.output)")
    }

    @Test func theTimeLimitEndsTheRunWithMegatronsLine() throws {
        let (status, output) = try Self.megatron(Self.validRun + ["--exit-duration-in-mins", "1e-9"])
        #expect(status == 0 && output.contains("[exiting program after ") && output.contains(" minutes] datetime: "), "\(output)")
        #expect(output.contains("iteration        1/") && !output.contains("iteration        2/"), "\(output)")
    }

    /// --exit-signal-handler: SIGTERM (a scheduler's warning) ends a long run cleanly after the
    /// current iteration, with a checkpoint of it.
    @Test func sigtermSavesAndExits() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sigterm-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        var run = Self.validRun + ["--exit-signal-handler", "--save", directory.path, "--log-interval", "1000"]
        run[run.firstIndex(of: "--train-iters")! + 1] = "1000000"
        let process = Process(), pipe = Pipe()
        process.executableURL = Self.productsDirectory.appendingPathComponent("megatron")
        process.arguments = run
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        // Past argument parsing, where the handler starts; a watchdog ends a run the signal did not.
        Thread.sleep(forTimeInterval: 3)
        process.terminate()  // SIGTERM
        let pid = process.processIdentifier
        let watchdog = DispatchWorkItem { kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 120, execute: watchdog)
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        watchdog.cancel()
        #expect(process.terminationReason == .exit && process.terminationStatus == 0, "\(output)")
        #expect(output.contains("[exiting program after receiving SIGTERM.] datetime: "), "\(output)")
        let saved = try #require(try Checkpoint.latestIteration(in: directory), "\(output)")
        #expect(output.contains("successfully saved checkpoint from iteration \(String(format: "%7d", saved))"), "\(output)")
    }

    @Test func theValidRunTrains() throws {
        let (status, output) = try Self.megatron(Self.validRun)
        #expect(status == 0, "\(output)")
        #expect(output.contains("iteration        2/       2"), "\(output)")
    }

    /// As Megatron's get_train_valid_test_num_samples: --train-samples samples are built (here 10,
    /// over 7 epochs of the fixture's documents) though train_samples // global batch = 2 iterations
    /// use 8 of them; the epochs decide the shuffle, so building 8 would train on other samples.
    @Test func trainSamplesBuildsThatManySamples() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/indexed_uint16").path
        var run = Self.validRun.filter { $0 != "--mock-data" }
        run.removeSubrange(run.firstIndex(of: "--train-iters")! ... run.firstIndex(of: "--train-iters")! + 1)
        run += ["--data-path", fixture, "--split", "100,0,0", "--vocab-size", "50304", "--eval-iters", "0",
                "--global-batch-size", "4", "--train-samples", "10"]
        let (status, output) = try Self.megatron(run)
        #expect(status == 0, "\(output)")
        #expect(output.contains("10 samples of 9 tokens over 7 epoch(s)"), "\(output)")
        #expect(output.contains("iteration        2/       2"), "\(output)")
    }

    /// Megatron requires these (arguments.py's required_args and its micro-batch assertion).
    @Test(arguments: ["--max-position-embeddings", "--micro-batch-size"])
    func requiredFlagsAreNamedWhenMissing(flag: String) throws {
        var run = Self.validRun
        run.removeSubrange(run.firstIndex(of: flag)! ... run.firstIndex(of: flag)! + 1)
        let (status, output) = try Self.megatron(run)
        #expect(status == 64, "\(output)")
        #expect(output.contains("Missing expected argument '\(flag)"), "\(output)")
    }

    /// A learning rate of 1e30 sends the weights past fp32's range after one step, so iteration 2's
    /// loss is not finite: by default the run stops there, naming it (Megatron's
    /// --check-for-nan-in-loss-and-grad); with --no-check-for-nan-in-loss-and-grad it is skipped.
    @Test func aNonFiniteLossStopsTheRunUnlessTheCheckIsOff() throws {
        let diverging = Self.validRun + ["--lr", "1e30", "--train-iters", "3", "--eval-iters", "0"]
        let (status, output) = try Self.megatron(diverging)
        #expect(status != 0, "\(output)")
        #expect(output.contains("iteration 2: the lm loss is"), "\(output)")
        let (unchecked, log) = try Self.megatron(diverging + ["--no-check-for-nan-in-loss-and-grad"])
        #expect(unchecked == 0, "\(log)")
        #expect(log.contains("iteration        3/       3") && log.contains("number of skipped iterations:   1"), "\(log)")
    }

    /// The command reports a bad flag as a usage error (status 64) with its message, whether the
    /// flag's own parsing, its option group or the run's plan refuses it (the whole table of rules
    /// is checked in-process: PretrainPlanTests).
    @Test(arguments: [
        (["--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", "/nonexistent/vocab.json", "--merge-file", "/nonexistent/merges.txt"],
         "--vocab-file /nonexistent/vocab.json: no such readable file"),
        (["--in-process-ranks", "2", "--tensor-model-parallel-size", "2", "--sequence-parallel", "--seq-length", "7"],
         "--sequence-parallel: --seq-length 7 is not divisible by --tensor-model-parallel-size 2"),
        (["--fp16", "--bf16"], "--fp16 and --bf16 exclude each other: pick one"),
    ])
    func contradictoryFlagsAreUsageErrorsNamingThem(extra: [String], message: String) throws {
        let (status, output) = try Self.megatron(Self.validRun + extra)
        #expect(status == 64, "\(extra): \(output)")
        #expect(output.contains("Error: \(message)"), "\(extra): \(output)")
    }
}
