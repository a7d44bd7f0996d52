import Foundation
import MegatronData
import Testing

/// --tokenizer-type HuggingFaceTokenizer, TikTokenizer and BertWordPieceLowerCase through the binary: preprocess-data
/// writes the tokenizer's ids (end of document: its eos), pretrain trains on them and prints a text
/// sample, generate continues a text prompt and serve answers text requests; bad flags are usage
/// errors that name them.
@Suite struct TokenizerCommandTests {
    static let tokenizers = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizers")

    static let documents = [
        "It is a truth universally acknowledged, that a single man must be in want of a wife.",
        "<|begin_of_text|>Le café est très bon à Paris, où les élèves étudient. 2024 ≠ 365",
        "Mr. Bennet made no answer. \"Do you not want to know who has taken it?\" cried his wife impatiently.",
    ]

    static func writeInput(_ dir: URL) throws -> URL {
        let input = dir.appendingPathComponent("input.jsonl")
        let lines = try documents.map { String(decoding: try JSONSerialization.data(withJSONObject: ["text": $0]), as: UTF8.self) }
        try (lines.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
        return input
    }

    @Test(arguments: [
        ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", tokenizers.appendingPathComponent("llama3_split").path],
        ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", tokenizers.appendingPathComponent("spm_metaspace/tokenizer.json").path],
        ["--tokenizer-type", "TikTokenizer", "--tokenizer-model", tokenizers.appendingPathComponent("tiktoken_tiny.json").path,
         "--tiktoken-pattern", "v1", "--vocab-size", "1928"],
        ["--tokenizer-type", "BertWordPieceLowerCase", "--vocab-file",
         tokenizers.deletingLastPathComponent().appendingPathComponent("wordpiece/uncased/vocab.txt").path],
    ])
    func preprocessPretrainAndGenerate(tokenizerFlags: [String]) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tokenizer-command-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let prefix = dir.appendingPathComponent("corpus").path
        let preprocessed = try PretrainFlagTests.megatron(["preprocess-data", "--input", try Self.writeInput(dir).path, "--output-prefix", prefix,
                                                           "--append-eod", "--workers", "1"] + tokenizerFlags)
        #expect(preprocessed.status == 0, "\(preprocessed.output)")

        let tokenizer: any TextTokenizer = switch tokenizerFlags[1] {
        case "TikTokenizer": try TikTokenizer(file: tokenizerFlags[3], pattern: .v1, vocabSize: 1928)
        case "BertWordPieceLowerCase": try BertWordPieceTokenizer(vocabFile: tokenizerFlags[3], lowerCase: true)
        default: try HuggingFaceTokenizer(path: tokenizerFlags[3])
        }
        let dataset = try IndexedDataset(prefix: prefix + "_text_document")
        let expected = try Self.documents.map { try tokenizer.encode($0) + [tokenizer.eod] }
        #expect((0 ..< dataset.sequenceCount).map(dataset.sequence) == expected)

        let checkpoint = dir.appendingPathComponent("checkpoint").path
        let trained = try PretrainFlagTests.megatron(
            ["pretrain", "--data-path", prefix + "_text_document", "--split", "100,0,0", "--eval-iters", "0",
             "--num-layers", "1", "--hidden-size", "16", "--num-attention-heads", "2", "--seq-length", "16",
             "--max-position-embeddings", "32", "--micro-batch-size", "1", "--train-iters", "2", "--lr", "1e-3",
             "--threads", "1", "--log-interval", "1", "--save", checkpoint, "--sample-tokens", "4", "--sample-prompt", "It is"]
            + tokenizerFlags)
        #expect(trained.status == 0 && trained.output.contains("iteration        2/       2"), "\(trained.output)")

        let generated = try PretrainFlagTests.megatron(["generate", "--load", checkpoint, "--prompt", "It is a truth",
                                                        "--tokens-to-generate", "3", "--threads", "1"] + tokenizerFlags)
        #expect(generated.status == 0 && generated.output.lowercased().contains("it is a truth"), "\(generated.output)")

        // Served: Megatron's API and OpenAI's take and give text through the same tokenizer.
        let server = try RunningServer(load: checkpoint, tokenizerFlags)
        let megatron = try server.call("PUT", "/api", #"{"prompts": ["It is a truth"], "tokens_to_generate": 3, "top_k": 1}"#)
        let texts = jsonObject(megatron)["text"] as? [String] ?? []
        #expect(megatron.status == 200 && texts.count == 1 && texts[0].lowercased().contains("it is a truth"), "\(megatron.text)")
        let openAI = try server.call("POST", "/v1/completions", #"{"prompt": "It is a truth", "max_tokens": 3, "temperature": 0}"#)
        #expect(openAI.status == 200 && openAI.text.contains("\"text\""), "\(openAI.text)")
    }

    @Test(arguments: [
        (["--tokenizer-type", "HuggingFaceTokenizer"], "--tokenizer-type HuggingFaceTokenizer needs --tokenizer-model"),
        (["--tokenizer-type", "TikTokenizer", "--tokenizer-model", "/nonexistent.json"], "--tokenizer-model /nonexistent.json: no such file or folder"),
        (["--tokenizer-type", "TikTokenizer", "--tokenizer-model", tokenizers.appendingPathComponent("tiktoken_tiny.json").path,
          "--tiktoken-pattern", "v3"], "--tiktoken-pattern"),
    ])
    func badTokenizerFlagsAreUsageErrors(flags: [String], message: String) throws {
        let (status, output) = try PretrainFlagTests.megatron(PretrainFlagTests.validRun.filter { $0 != "--tokenizer-type" && $0 != "NullTokenizer" } + flags)
        #expect(status == 64 && output.contains(message), "\(flags): \(output)")
    }

    @Test func aTokenizerWithoutEndOfDocumentIsAnErrorNamingTheFlag() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tokenizer-no-eos-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: Self.tokenizers.appendingPathComponent("gpt2_bytelevel/tokenizer.json"),
                                         to: dir.appendingPathComponent("tokenizer.json"))
        let (status, output) = try PretrainFlagTests.megatron(
            ["preprocess-data", "--input", try Self.writeInput(dir).path, "--output-prefix", dir.appendingPathComponent("x").path,
             "--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", dir.path])
        #expect(status != 0 && output.contains("--tokenizer-model \(dir.path): no eos_token"), "\(output)")
    }
}
