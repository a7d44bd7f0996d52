import Foundation

/// Megatron's `--tokenizer-type TikTokenizer --tokenizer-model FILE --tiktoken-pattern v1|v2`:
/// tiktoken's byte-level BPE over a vocabulary file as megatron.core's TikTokenTokenizer reads it —
/// a JSON list of `{"rank", "token_bytes" (base64), "token_str"}`, ranks 0, 1, … in order, the
/// first 256 the single bytes.
///
/// Ids: the special tokens come first (`--tokenizer-special-tokens`, by default `<unk> <s> </s>
/// <mask> <pad> <cls> <sep>`, then fillers `<SPECIAL_n>` up to `--tiktoken-num-special-tokens`),
/// then the vocabulary's ranks shifted by that number and cut to `--vocab-size` ids in all.
/// Encoding (`tokenize`, tiktoken's `encode(text, allowed_special="all")`): special-token strings
/// in the text are their ids; the text between is cut by the pattern and each piece is its own
/// token if it is one, else BPE merges its bytes, lowest-ranked concatenation first. `eod` is `</s>`.
public final class TikTokenizer: TextTokenizer, Sendable {
    public enum Pattern: String, CaseIterable, Sendable {
        case v1, v2

        /// Megatron's two pre-tokenizer expressions.
        public var expression: String {
            switch self {
            case .v1: #"[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"#
            case .v2: #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
            }
        }
    }

    public static let defaultSpecialTokens = ["<unk>", "<s>", "</s>", "<mask>", "<pad>", "<cls>", "<sep>"]

    public let vocabSize: Int
    public let specialTokens: [String]
    public let bos: Int32, eos: Int32, unk: Int32, pad: Int32
    public var eod: Int32 { eos }

    private let regex: UnicodeRegex
    private let specials: TokenMatcher
    /// Each id's bytes (special tokens: their UTF-8).
    private let tokenBytes: [[UInt8]]
    private let idOfBytes: [[UInt8]: Int32]
    private let merges: BytePairMerges
    private let pieceCache = SharedPieceCache()

    /// Loads `file`; `vocabSize` counts the special tokens, `numSpecialTokens` the slots they (and
    /// their fillers) take.
    public init(file: String, pattern: Pattern, vocabSize: Int = 131_072, numSpecialTokens: Int = 1000,
                specialTokens: [String]? = nil) throws {
        let specialTokens = specialTokens ?? Self.defaultSpecialTokens
        for required in Self.defaultSpecialTokens where !specialTokens.contains(required) {
            throw TokenizerError("TikTokenizer: the special tokens must include \(required) (they are \(specialTokens))")
        }
        guard Set(specialTokens).count == specialTokens.count else { throw TokenizerError("TikTokenizer: special tokens repeat: \(specialTokens)") }
        guard specialTokens.count <= numSpecialTokens, numSpecialTokens < vocabSize else {
            throw TokenizerError("""
                TikTokenizer: need \(specialTokens.count) special tokens ≤ --tiktoken-num-special-tokens \(numSpecialTokens) \
                < --vocab-size \(vocabSize)
                """)
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: file), options: .alwaysMapped) } catch {
            throw TokenizerError("--tokenizer-model \(file): cannot read it (\(error.localizedDescription))")
        }
        guard let entries = (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] else {
            throw TokenizerError("--tokenizer-model \(file): not a JSON list of {\"rank\", \"token_bytes\", \"token_str\"} (tiktoken's vocabulary as Megatron reads it)")
        }
        let ranks = vocabSize - numSpecialTokens
        guard ranks >= 256 else {
            throw TokenizerError("TikTokenizer: --vocab-size \(vocabSize) − \(numSpecialTokens) special tokens leaves fewer than the 256 single bytes")
        }
        guard entries.count >= ranks else {
            throw TokenizerError("--tokenizer-model \(file): \(entries.count) tokens, fewer than --vocab-size \(vocabSize) − \(numSpecialTokens) special")
        }
        let fillers = (specialTokens.count ..< numSpecialTokens).map { "<SPECIAL_\($0)>" }
        var tokenBytes = (specialTokens + fillers).map { Array($0.utf8) }
        var idOfBytes: [[UInt8]: Int32] = [:]
        for (rank, entry) in entries.prefix(ranks).enumerated() {
            guard entry["rank"] as? Int == rank, let encoded = entry["token_bytes"] as? String,
                  let bytes = Data(base64Encoded: encoded).map(Array.init), !bytes.isEmpty else {
                throw TokenizerError("--tokenizer-model \(file): entry \(rank) is not {\"rank\": \(rank), \"token_bytes\": base64, …}")
            }
            guard rank >= 256 || bytes == [UInt8(rank)] else {
                throw TokenizerError("--tokenizer-model \(file): entry \(rank) must be the single byte \(rank)")
            }
            guard idOfBytes[bytes] == nil else { throw TokenizerError("--tokenizer-model \(file): entry \(rank) repeats an earlier token") }
            idOfBytes[bytes] = Int32(numSpecialTokens + rank)
            tokenBytes.append(bytes)
        }
        // A token merges from any two tokens it splits into, at its own rank.
        var merges = BytePairMerges()
        for (bytes, id) in idOfBytes where bytes.count > 1 {
            for cut in 1 ..< bytes.count {
                if let left = idOfBytes[Array(bytes[..<cut])], let right = idOfBytes[Array(bytes[cut...])] {
                    merges.add(left, right, rank: id, merged: id)
                }
            }
        }
        self.vocabSize = vocabSize
        self.specialTokens = specialTokens
        self.tokenBytes = tokenBytes
        self.idOfBytes = idOfBytes
        self.merges = merges
        regex = try UnicodeRegex(pattern.expression)
        specials = TokenMatcher((specialTokens + fillers).enumerated().map { id, token in
            AddedVocabulary.Token(id: Int32(id), content: token.unicodeScalars.map(\.value), special: true,
                                  singleWord: false, leftStrip: false, rightStrip: false, normalized: false)
        })
        func id(_ token: String) -> Int32 { Int32(specialTokens.firstIndex(of: token)!) }
        (unk, bos, eos, pad) = (id("<unk>"), id("<s>"), id("</s>"), id("<pad>"))
    }

    /// The ids of `text`, special-token strings included as their ids (Megatron's `tokenize`).
    public func encode(_ text: String) -> [Int32] { encode(text, allowSpecialTokens: true) }

    /// `allowSpecialTokens` false: special-token strings are ordinary text (tiktoken's
    /// `encode_ordinary`, the legacy CustomTikTokenizer's `tokenize`).
    public func encode(_ text: String, allowSpecialTokens: Bool) -> [Int32] {
        let classified = ClassifiedText(text)
        let scalars = classified.scalars
        var ids: [Int32] = []
        var pieces = PieceEncoder(shared: pieceCache)
        var start = 0
        var position = 0
        func encodeOrdinary(_ range: Range<Int>) {
            for piece in regex.matches(in: classified, range: range) {
                pieces.encode(scalars[piece], into: &ids, encodePiece)
            }
        }
        while allowSpecialTokens && position < scalars.count {
            if let special = specials.longestMatch(scalars, at: position, end: scalars.count) {
                encodeOrdinary(start ..< position)
                ids.append(special.id)
                position += special.content.count
                start = position
            } else {
                position += 1
            }
        }
        encodeOrdinary(start ..< scalars.count)
        return ids
    }

    /// One piece: itself when it is a token, else BPE over its bytes.
    private func encodePiece(_ bytes: ArraySlice<UInt8>, _ ids: inout [Int32]) {
        if let id = idOfBytes[Array(bytes)] {
            ids.append(id)
            return
        }
        var parts = bytes.map { idOfBytes[[$0]]! }
        merges.apply(&parts)
        ids += parts
    }

    /// The text of `ids`: their bytes as UTF-8, U+FFFD for each invalid stretch (ids out of range are skipped).
    public func decode(_ ids: [Int32]) -> String {
        var bytes: [UInt8] = []
        for id in ids where id >= 0 && Int(id) < tokenBytes.count { bytes += tokenBytes[Int(id)] }
        return String(decoding: bytes, as: UTF8.self)
    }
}
