import Foundation

/// A tokenizer.json `post_processor`, for one sequence: the ids it puts before and after the
/// encoded text when special tokens are added (`TemplateProcessing`'s single template, BERT's and
/// RoBERTa's [CLS] … [SEP]; ByteLevel only adjusts offsets, so it adds nothing).
struct PostProcessor: Sendable {
    var prefix: [Int32] = []
    var suffix: [Int32] = []

    static func from(json value: Any?) throws -> PostProcessor {
        var processor = PostProcessor()
        guard let value, !(value is NSNull) else { return processor }
        try processor.add(json: value)
        return processor
    }

    private mutating func add(json value: Any) throws {
        let fields = try JSONFields(value, "post_processor")
        switch fields.type {
        case "ByteLevel":
            break
        case "Sequence":
            for step in try fields.array("processors") { try add(json: step) }
        case "BertProcessing", "RobertaProcessing":
            func id(_ key: String) throws -> Int32 {
                guard let pair = fields.object[key] as? [Any], pair.count == 2, let id = pair[1] as? Int else {
                    throw TokenizerError("post_processor \(fields.type!): field \"\(key)\" must be [token, id]")
                }
                return Int32(id)
            }
            prefix = try [id("cls")] + prefix
            suffix += [try id("sep")]
        case "TemplateProcessing":
            let specials = fields.object["special_tokens"] as? [String: Any] ?? [:]
            var before: [Int32] = [], after: [Int32] = []
            var seenSequence = false
            for item in try fields.array("single") {
                let piece = try JSONFields(item, "post_processor TemplateProcessing single")
                if piece.object["Sequence"] != nil {
                    guard !seenSequence else { throw TokenizerError("post_processor TemplateProcessing: single names the sequence twice") }
                    seenSequence = true
                } else if let special = piece.object["SpecialToken"] as? [String: Any], let name = special["id"] as? String {
                    guard let entry = specials[name] as? [String: Any], let ids = entry["ids"] as? [Int] else {
                        throw TokenizerError("post_processor TemplateProcessing: special token \(name.debugDescription) is not in special_tokens")
                    }
                    if seenSequence { after += ids.map(Int32.init) } else { before += ids.map(Int32.init) }
                } else {
                    throw TokenizerError("post_processor TemplateProcessing: single has an item that is neither SpecialToken nor Sequence")
                }
            }
            guard seenSequence else { throw TokenizerError("post_processor TemplateProcessing: single has no Sequence") }
            prefix = before + prefix
            suffix += after
        case let other:
            throw fields.unsupported(other ?? "(none)")
        }
    }
}
