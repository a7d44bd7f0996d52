import ArgumentParser
import Foundation
import MegatronData

/// Megatron's tokenizer flags, shared by `preprocess-data`, `pretrain`, `generate` and `serve`.
public struct TokenizerOptions: ParsableArguments, Sendable {
    public init() {}

    /// --tokenizer-type's values (Megatron's names).
    public enum TokenizerType: String, ExpressibleByArgument, CaseIterable, Sendable {
        case gpt2BPE = "GPT2BPETokenizer", huggingFace = "HuggingFaceTokenizer", tikToken = "TikTokenizer"
        case bertLowerCase = "BertWordPieceLowerCase", bertCase = "BertWordPieceCase", null = "NullTokenizer"
    }

    @Option(name: .customLong("tokenizer-type"), help: """
        GPT2BPETokenizer (--vocab-file, --merge-file), HuggingFaceTokenizer (--tokenizer-model DIR|tokenizer.json), \
        TikTokenizer (--tokenizer-model FILE, --tiktoken-pattern), BertWordPieceLowerCase or BertWordPieceCase \
        (--vocab-file vocab.txt) or NullTokenizer (--vocab-size).
        """)
    public var tokenizerType = TokenizerType.gpt2BPE
    @Option(name: .customLong("vocab-file")) public var vocabFile: String?
    @Option(name: .customLong("merge-file")) public var mergeFile: String?
    @Option(name: .customLong("tokenizer-model"), help: """
        HuggingFaceTokenizer: a folder with tokenizer.json and tokenizer_config.json (which names eos_token, \
        the end of document), or a tokenizer.json; TikTokenizer: the vocabulary JSON list.
        """)
    public var tokenizerModel: String?
    @Flag(name: .customLong("tokenizer-hf-no-include-special-tokens"), help: """
        HuggingFaceTokenizer: tokenize without the post-processor's special tokens (BOS, …) and detokenize \
        without the special tokens tokenizer_config.json names.
        """)
    public var hfNoIncludeSpecialTokens = false
    @Option(name: .customLong("tiktoken-pattern"), help: "TikTokenizer's pre-tokenizer pattern: v1 or v2.")
    public var tiktokenPattern = TikTokenizer.Pattern.v2
    @Option(name: .customLong("tiktoken-num-special-tokens"), help: "TikTokenizer: ids reserved for special tokens before the vocabulary.")
    public var tiktokenNumSpecialTokens = 1000
    @Option(name: [.customLong("tokenizer-special-tokens"), .customLong("tiktoken-special-tokens")], parsing: .upToNextOption,
            help: "TikTokenizer's special tokens, in id order (default: <unk> <s> </s> <mask> <pad> <cls> <sep>).")
    public var specialTokens: [String] = []
    @Option(name: .customLong("vocab-extra-ids"), help: "BertWordPiece*: sentinel tokens <extra_id_0> … added after the vocabulary (T5's).")
    public var vocabExtraIDs = 0
    @Option(name: .customLong("vocab-size"), help: """
        NullTokenizer: ids are 0 ..< vocab-size, the last one end-of-document; TikTokenizer: ids in all, \
        special tokens included (default 131072).
        """)
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
        case .huggingFace, .tikToken:
            guard let tokenizerModel else { throw ValidationError("--tokenizer-type \(tokenizerType.rawValue) needs --tokenizer-model") }
            guard FileManager.default.fileExists(atPath: tokenizerModel) else {
                throw ValidationError("--tokenizer-model \(tokenizerModel): no such file or folder")
            }
        case .bertLowerCase, .bertCase:
            guard let vocabFile else { throw ValidationError("--tokenizer-type \(tokenizerType.rawValue) needs --vocab-file") }
            guard FileManager.default.isReadableFile(atPath: vocabFile) else { throw ValidationError("--vocab-file \(vocabFile): no such readable file") }
            guard vocabExtraIDs >= 0 else { throw ValidationError("--vocab-extra-ids \(vocabExtraIDs): expected 0 or more") }
        case .null:
            guard let vocabSize, vocabSize >= 2 else { throw ValidationError("--tokenizer-type NullTokenizer needs --vocab-size ≥ 2") }
        }
    }

    /// Whether the tokenizer turns text into ids (every type but NullTokenizer, whose "text" is ids).
    public var readsText: Bool { tokenizerType != .null }

    /// The tokenizer the (validated) flags name, loaded from its files. `needsEndOfDocument` false
    /// (benchmarks) accepts a HuggingFaceTokenizer whose files name no eos_token.
    public func makeTokenizer(needsEndOfDocument: Bool = true) throws -> any TextTokenizer {
        switch tokenizerType {
        case .gpt2BPE:
            return try GPT2BPETokenizer(vocabFile: URL(fileURLWithPath: vocabFile!), mergesFile: URL(fileURLWithPath: mergeFile!))
        case .huggingFace:
            return try HuggingFaceTokenizer(path: tokenizerModel!, requireEndOfDocument: needsEndOfDocument,
                                            includeSpecialTokens: !hfNoIncludeSpecialTokens)
        case .tikToken:
            return try TikTokenizer(file: tokenizerModel!, pattern: tiktokenPattern, vocabSize: vocabSize ?? 131_072,
                                    numSpecialTokens: tiktokenNumSpecialTokens, specialTokens: specialTokens.isEmpty ? nil : specialTokens)
        case .bertLowerCase, .bertCase:
            return try BertWordPieceTokenizer(vocabFile: vocabFile!, lowerCase: tokenizerType == .bertLowerCase, extraIDs: vocabExtraIDs)
        case .null:
            return try NullTokenizer(vocabSize: vocabSize!)
        }
    }
}

extension TikTokenizer.Pattern: ExpressibleByArgument {}
