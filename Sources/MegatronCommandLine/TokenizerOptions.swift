import ArgumentParser
import Foundation
import MegatronData

/// Megatron's tokenizer flags, shared by `preprocess-data` and `pretrain`.
public struct TokenizerOptions: ParsableArguments, Sendable {
    public init() {}

    /// --tokenizer-type's values (Megatron's names).
    public enum TokenizerType: String, ExpressibleByArgument, CaseIterable, Sendable {
        case gpt2BPE = "GPT2BPETokenizer", null = "NullTokenizer"
    }

    @Option(name: .customLong("tokenizer-type"), help: "GPT2BPETokenizer (with --vocab-file, --merge-file) or NullTokenizer (with --vocab-size).")
    public var tokenizerType = TokenizerType.gpt2BPE
    @Option(name: .customLong("vocab-file")) public var vocabFile: String?
    @Option(name: .customLong("merge-file")) public var mergeFile: String?
    @Option(name: .customLong("vocab-size"), help: "NullTokenizer: ids are 0 ..< vocab-size, the last one end-of-document.")
    public var vocabSize: Int?

    public func validate() throws {
        switch tokenizerType {
        case .gpt2BPE:
            guard let vocabFile, let mergeFile else {
                throw ValidationError("--tokenizer-type GPT2BPETokenizer needs --vocab-file and --merge-file")
            }
            for (flag, path) in [("--vocab-file", vocabFile), ("--merge-file", mergeFile)]
            where !FileManager.default.isReadableFile(atPath: path) {
                throw ValidationError("\(flag) \(path): no such readable file")
            }
        case .null:
            guard let vocabSize, vocabSize >= 2 else { throw ValidationError("--tokenizer-type NullTokenizer needs --vocab-size ≥ 2") }
        }
    }

    public var isGPT2BPE: Bool { tokenizerType == .gpt2BPE }

    /// The tokenizer the (validated) flags name; the GPT-2 one reads its vocabulary and merges files.
    public func makeTokenizer() throws -> any TextTokenizer {
        isGPT2BPE
            ? try GPT2BPETokenizer(vocabFile: URL(fileURLWithPath: vocabFile!), mergesFile: URL(fileURLWithPath: mergeFile!))
            : try NullTokenizer(vocabSize: vocabSize!)
    }
}
