import ArgumentParser
import Foundation
import MegatronCommandLine
import MegatronData

/// `megatron-bench tokenizer`: single-thread encoding speed of any --tokenizer-type on a text file,
/// and, with --compare-python, the reference library's (tokenizers for tokenizer.json, tiktoken for
/// TikTokenizer, on one thread) on the same text in the same run.
struct BenchTokenizer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer", abstract: "Single-thread tokenizer encoding throughput (tokens/s, MB/s) on a text file, against the reference library.")

    @Option(help: "UTF-8 text to encode.") var input: String
    @Flag(name: .customLong("per-line"), help: "Encode each non-empty line as a document (as preprocess-data does JSONL lines) instead of the whole file as one.")
    var perLine = false
    @OptionGroup var tokenizer: TokenizerOptions
    @Option(help: "Timed repetitions (the best is reported).") var repeats = 3
    @Option(name: .customLong("compare-python"), help: """
        A python3 with the `tokenizers` package (HuggingFaceTokenizer) or `tiktoken` (TikTokenizer): \
        time it on the same text and check it gives the same ids.
        """)
    var comparePython: String?

    func validate() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats \(repeats): expected at least 1") }
        if comparePython != nil && ![.huggingFace, .tikToken].contains(tokenizer.tokenizerType) {
            throw ValidationError("--compare-python: only for HuggingFaceTokenizer and TikTokenizer")
        }
    }

    func run() throws {
        let tokenizer = try self.tokenizer.makeTokenizer(needsEndOfDocument: false)
        guard let text = try? String(contentsOfFile: input, encoding: .utf8) else {
            throw ValidationError("--input \(input): cannot read it as UTF-8 text")
        }
        let documents = perLine ? text.unicodeScalars.split(separator: "\n").map { String(String.UnicodeScalarView($0)) } : [text]
        var ids: [Int32] = []
        let timing = try Timing.measure(repeats: repeats, warmup: 0) {
            ids = []
            for document in documents { ids += try tokenizer.encode(document) }
        }
        let bytes = Double(text.utf8.count)
        print("""
            \(input): \(text.utf8.count) bytes in \(documents.count) document(s) → \(ids.count) tokens (\(self.tokenizer.tokenizerType.rawValue))
            swift-megatron: best of \(repeats): \(fixed(timing.best, 3)) s, \(fixed(Double(ids.count) / timing.best / 1e6, 2)) M tokens/s, \
            \(fixed(bytes / timing.best / 1e6, 1)) MB/s (1 thread)
            """)
        guard let comparePython else { return }
        let reference = try referenceTiming(python: comparePython)
        guard reference.ids == ids else {
            let first = zip(reference.ids, ids).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(reference.ids.count, ids.count)
            throw ValidationError("the reference library's ids differ from ours (at token \(first) of \(reference.ids.count))")
        }
        print("""
            \(reference.library): best of \(repeats): \(fixed(reference.seconds, 3)) s, \(fixed(Double(ids.count) / reference.seconds / 1e6, 2)) M tokens/s \
            (1 thread; same ids) → swift-megatron \(fixed(reference.seconds / timing.best, 2))×
            """)
    }

    /// Runs the reference library on the same text in a child python3: best time and its ids.
    private func referenceTiming(python: String) throws -> (library: String, seconds: Double, ids: [Int32]) {
        let script: String
        var arguments = [input, String(repeats), perLine ? "lines" : "whole"]
        switch tokenizer.tokenizerType {
        case .huggingFace:
            var model = URL(fileURLWithPath: tokenizer.tokenizerModel!)
            if (try? model.resourceValues(forKeys: [.isDirectoryKey]).isDirectory) == true { model.appendPathComponent("tokenizer.json") }
            arguments.append(model.path)
            script = """
                import sys, time, json, tokenizers
                text = open(sys.argv[1], encoding="utf-8").read()
                docs = [d for d in text.split("\\n") if d] if sys.argv[3] == "lines" else [text]
                tok = tokenizers.Tokenizer.from_file(sys.argv[4])
                best = float("inf")
                for _ in range(int(sys.argv[2])):
                    t = time.perf_counter(); ids = [i for d in docs for i in tok.encode(d).ids]; best = min(best, time.perf_counter() - t)
                print(json.dumps({"library": "tokenizers " + tokenizers.__version__, "seconds": best, "ids": ids}))
                """
        default:
            arguments += [tokenizer.tokenizerModel!, tokenizer.tiktokenPattern.expression, String(tokenizer.vocabSize ?? 131_072),
                          String(tokenizer.tiktokenNumSpecialTokens), tokenizer.specialTokens.joined(separator: "\u{1}")]
            script = """
                import sys, time, json, base64, tiktoken
                text = open(sys.argv[1], encoding="utf-8").read()
                docs = [d for d in text.split("\\n") if d] if sys.argv[3] == "lines" else [text]
                path, pattern, vocab_size, num_special, specials = sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7]), sys.argv[8]
                specials = specials.split("\\x01") if specials else ["<unk>", "<s>", "</s>", "<mask>", "<pad>", "<cls>", "<sep>"]
                specials += ["<SPECIAL_%d>" % i for i in range(len(specials), num_special)]
                vocab = json.load(open(path))[: vocab_size - num_special]
                ranks = {base64.b64decode(x["token_bytes"]): i + num_special for i, x in enumerate(vocab)}
                enc = tiktoken.Encoding("megatron", pat_str=pattern, mergeable_ranks=ranks,
                                        special_tokens={t: i for i, t in enumerate(specials)})
                best = float("inf")
                for _ in range(int(sys.argv[2])):
                    t = time.perf_counter(); ids = [i for d in docs for i in enc.encode(d, allowed_special="all")]; best = min(best, time.perf_counter() - t)
                print(json.dumps({"library": "tiktoken " + tiktoken.__version__, "seconds": best, "ids": ids}))
                """
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["RAYON_NUM_THREADS"] = "1"
        environment["TOKENIZERS_PARALLELISM"] = "false"
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let result = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let library = result["library"] as? String, let seconds = result["seconds"] as? Double, let ids = result["ids"] as? [Int] else {
            throw ValidationError("--compare-python \(python): the reference run failed (exit \(process.terminationStatus))")
        }
        return (library, seconds, ids.map(Int32.init))
    }
}
