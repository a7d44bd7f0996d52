import Foundation

/// Megatron's `--tokenizer-type HuggingFaceTokenizer --tokenizer-model DIR|tokenizer.json`: the
/// BPE tokenizers that Hugging Face `tokenizer.json` files describe (GPT-2's byte level, Llama-3's,
/// Qwen2's and DeepSeek's regex splits, Llama-2's and Mistral's SentencePiece-style BPE with byte
/// fallback), giving the ids transformers' `AutoTokenizer(text).input_ids` gives.
///
/// Encoding, as `tokenizers` does it: added tokens that are not normalized are cut out of the raw
/// text; each stretch between is normalized and cut at the normalized added tokens; each remaining
/// stretch is pre-tokenized into pieces and each piece BPE-encoded (pieces repeat, so each distinct
/// one is encoded once per call); the post-processor's ids go around the result. Decoding maps ids
/// to tokens and runs the decoder over them.
///
/// `eod` (Megatron's end of document) is the `eos_token` that tokenizer_config.json names; `bos`
/// likewise. A folder without one, or a tokenizer.json alone, has no eod: loading it is an error
/// unless the caller accepts that (`requireEndOfDocument: false`, for tokenizing only).
public final class HuggingFaceTokenizer: TextTokenizer, Sendable {
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let model: BPEModel
    let addedVocabulary: AddedVocabulary
    let postProcessor: PostProcessor
    let decoder: TokenDecoder?
    let pieceCache = SharedPieceCache()

    /// len(AutoTokenizer): the model's vocabulary with the added tokens.
    public let vocabSize: Int
    public let bos: Int32?
    public let eos: Int32?
    /// `eos`; 0 for a tokenizer loaded without one (`requireEndOfDocument: false`).
    public var eod: Int32 { eos ?? 0 }

    /// Loads `path`: a folder holding tokenizer.json (and tokenizer_config.json), or a
    /// tokenizer.json file (its folder's tokenizer_config.json read when there is one).
    /// Whether `encode` adds the post-processor's tokens and `decode` keeps the special tokens
    /// tokenizer_config.json names (Megatron's default; `--tokenizer-hf-no-include-special-tokens`:
    /// neither).
    public let includeSpecialTokens: Bool
    /// The ids of the special tokens tokenizer_config.json names (transformers' all_special_tokens).
    let configSpecialIDs: Set<Int32>

    public init(path: String, requireEndOfDocument: Bool = true, includeSpecialTokens: Bool = true) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TokenizerError("--tokenizer-model \(path): no such file or folder")
        }
        let folder = isDirectory.boolValue ? URL(fileURLWithPath: path) : URL(fileURLWithPath: path).deletingLastPathComponent()
        let file = isDirectory.boolValue ? folder.appendingPathComponent("tokenizer.json") : URL(fileURLWithPath: path)
        let json: [String: Any]
        do {
            let data = try Data(contentsOf: file, options: .alwaysMapped)
            guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw TokenizerError("not a JSON object")
            }
            json = object
        } catch {
            throw TokenizerError("--tokenizer-model \(file.path): cannot read it as a tokenizer.json (\(error))")
        }
        do {
            if let truncation = json["truncation"], !(truncation is NSNull) {
                throw TokenizerError("truncation is set; Megatron tokenizes whole documents")
            }
            normalizer = try Normalizer.from(json: json["normalizer"])
            preTokenizer = try PreTokenizer.from(json: json["pre_tokenizer"])
            model = try BPEModel(json: json["model"], byteLevel: preTokenizer?.isByteLevel ?? false)
            addedVocabulary = try AddedVocabulary(json: json["added_tokens"], model: model, normalizer: normalizer)
            postProcessor = try PostProcessor.from(json: json["post_processor"])
            decoder = try TokenDecoder.from(json: json["decoder"])
        } catch let error as TokenizerError {
            throw TokenizerError("--tokenizer-model \(file.path): \(error.description)")
        }
        vocabSize = max(model.tokens.count, Int(addedVocabulary.tokens.keys.max() ?? -1) + 1)

        let configFile = folder.appendingPathComponent("tokenizer_config.json")
        var config: [String: Any] = [:]
        if FileManager.default.fileExists(atPath: configFile.path) {
            guard let data = try? Data(contentsOf: configFile),
                  let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw TokenizerError("\(configFile.path): not a JSON object")
            }
            config = object
        }
        let (addedVocabulary, model) = (addedVocabulary, model)
        func specialID(_ key: String, _ value: Any?) throws -> Int32? {
            guard let value, !(value is NSNull) else { return nil }
            let content = (value as? String) ?? ((value as? [String: Any])?["content"] as? String)
            guard let content else { throw TokenizerError("\(configFile.path): \(key) must be a string or {\"content\": …}") }
            guard let id = addedVocabulary.idOfContent[content] ?? model.idOfBytes[Array(content.utf8)] else {
                throw TokenizerError("\(configFile.path): \(key) \(content.debugDescription) is not a token of \(file.lastPathComponent)")
            }
            return id
        }
        bos = try specialID("bos_token", config["bos_token"])
        eos = try specialID("eos_token", config["eos_token"])
        let keys = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]
        let additional = config["additional_special_tokens"] as? [Any] ?? []
        configSpecialIDs = Set(try keys.compactMap { try specialID($0, config[$0]) }
            + additional.enumerated().compactMap { try specialID("additional_special_tokens[\($0)]", $1) })
        self.includeSpecialTokens = includeSpecialTokens
        if requireEndOfDocument && eos == nil {
            throw TokenizerError("""
                --tokenizer-model \(path): no eos_token (Megatron's end-of-document token): pass the folder whose \
                tokenizer_config.json names it
                """)
        }
    }

    /// The ids of `text`, with the post-processor's special tokens unless `includeSpecialTokens` is
    /// off (Megatron's `tokenize`).
    public func encode(_ text: String) throws -> [Int32] { try encode(text, addSpecialTokens: includeSpecialTokens) }

    public func encode(_ text: String, addSpecialTokens: Bool) throws -> [Int32] {
        let scalars = text.unicodeScalars.map(\.value)
        var ids: [Int32] = addSpecialTokens ? postProcessor.prefix : []
        var pieces = PieceEncoder(shared: pieceCache)
        for segment in addedVocabulary.split(scalars, 0 ..< scalars.count, addedVocabulary.raw) {
            switch segment {
            case .token(let id):
                ids.append(id)
            case .text(let range):
                var stretch = Array(scalars[range])
                if let normalizer { stretch = normalizer(stretch) }
                for part in addedVocabulary.split(stretch, 0 ..< stretch.count, addedVocabulary.normalized) {
                    switch part {
                    case .token(let id): ids.append(id)
                    case .text(let inner): try encodeStretch(Array(stretch[inner]), atStart: range.lowerBound == 0 && inner.lowerBound == 0, into: &ids, &pieces)
                    }
                }
            }
        }
        if addSpecialTokens { ids += postProcessor.suffix }
        return ids
    }

    /// Pre-tokenizes one normalized stretch and BPE-encodes its pieces.
    private func encodeStretch(_ scalars: [UInt32], atStart: Bool, into ids: inout [Int32], _ pieces: inout PieceEncoder) throws {
        var text = PreTokenizedText(scalars)
        preTokenizer?(&text, atStart: atStart)
        let scalars = text.text.scalars
        for piece in text.pieces {
            var start = piece.lowerBound
            if model.cutsBeforeWordMarker {
                for i in piece.dropFirst() where scalars[i] == BPEModel.wordMarker && scalars[i - 1] != BPEModel.wordMarker {
                    try pieces.encode(scalars[start ..< i], into: &ids) { try model.encode($0, into: &$1) }
                    start = i
                }
            }
            try pieces.encode(scalars[start ..< piece.upperBound], into: &ids) { try model.encode($0, into: &$1) }
        }
    }

    /// The text of `ids` (Megatron's `detokenize`: transformers' decode, special tokens kept unless
    /// `includeSpecialTokens` is off, when those tokenizer_config.json names are dropped first).
    public func decode(_ ids: [Int32]) -> String {
        decode(includeSpecialTokens ? ids : ids.filter { !configSpecialIDs.contains($0) }, skipSpecialTokens: false)
    }

    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        var tokens: [String] = []
        for id in ids {
            if let added = addedVocabulary.tokens[id] {
                if !(skipSpecialTokens && added.special) { tokens.append(String(String.UnicodeScalarView(added.content.map { Unicode.Scalar($0)! }))) }
            } else if id >= 0 && Int(id) < model.tokens.count {
                tokens.append(model.tokens[Int(id)])
            }
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder(tokens).joined()
    }
}
