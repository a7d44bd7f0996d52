import Foundation

/// Reading one component of a tokenizer.json (a JSON object from `JSONSerialization`), each
/// missing or mistyped field an error that names the component and the field.
struct JSONFields {
    let object: [String: Any]
    /// What the object is, for messages: "normalizer Replace", "model", …
    let context: String

    init(_ value: Any?, _ context: String) throws {
        guard let object = value as? [String: Any] else { throw TokenizerError("\(context): expected a JSON object") }
        self.object = object
        self.context = context
    }

    var type: String? { object["type"] as? String }

    func isNull(_ key: String) -> Bool { object[key] == nil || object[key] is NSNull }

    func string(_ key: String) throws -> String {
        guard let value = object[key] as? String else { throw TokenizerError("\(context): field \"\(key)\" must be a string") }
        return value
    }

    func optionalString(_ key: String) throws -> String? { isNull(key) ? nil : try string(key) }

    func bool(_ key: String, default fallback: Bool) throws -> Bool {
        if isNull(key) { return fallback }
        guard let value = object[key] as? Bool else { throw TokenizerError("\(context): field \"\(key)\" must be true or false") }
        return value
    }

    func int(_ key: String) throws -> Int {
        guard let value = object[key] as? Int else { throw TokenizerError("\(context): field \"\(key)\" must be an integer") }
        return value
    }

    func array(_ key: String) throws -> [Any] {
        guard let value = object[key] as? [Any] else { throw TokenizerError("\(context): field \"\(key)\" must be a list") }
        return value
    }

    /// A `{"String": s}` or `{"Regex": r}` pattern field.
    func pattern(_ key: String) throws -> TextPattern {
        let pattern = try JSONFields(object[key], "\(context) \(key)")
        if let literal = pattern.object["String"] as? String { return .literal(literal) }
        if let regex = pattern.object["Regex"] as? String {
            do { return .regex(try UnicodeRegex(regex)) } catch let error as TokenizerError {
                throw TokenizerError("\(context) \(key): \(error.description)")
            }
        }
        throw TokenizerError("\(context): field \"\(key)\" must be {\"String\": …} or {\"Regex\": …}")
    }

    func unsupported(_ kind: String) -> TokenizerError {
        TokenizerError("\(context): type \(kind.debugDescription) is not supported")
    }
}

/// A normalizer's or pre-tokenizer's pattern: a literal string or a regular expression.
enum TextPattern: Sendable {
    case literal(String)
    case regex(UnicodeRegex)

    /// The matches in `text.scalars[range]`, left to right, not overlapping.
    func matches(in text: ClassifiedText, range: Range<Int>) -> [Range<Int>] {
        switch self {
        case .regex(let regex): regex.matches(in: text, range: range)
        case .literal(let literal): Self.literalMatches(literal, in: text.scalars, range: range)
        }
    }

    /// The matches in `scalars` (classified only for a regular expression).
    func matches(in scalars: [UInt32]) -> [Range<Int>] {
        switch self {
        case .regex(let regex): regex.matches(in: ClassifiedText(scalars))
        case .literal(let literal): Self.literalMatches(literal, in: scalars, range: 0 ..< scalars.count)
        }
    }

    private static func literalMatches(_ literal: String, in scalars: [UInt32], range: Range<Int>) -> [Range<Int>] {
        let needle = literal.unicodeScalars.map(\.value)
        guard !needle.isEmpty else { return [] }
        var found: [Range<Int>] = []
        var i = range.lowerBound
        while i + needle.count <= range.upperBound {
            if scalars[i] == needle[0] && scalars[i ..< i + needle.count].elementsEqual(needle) {
                found.append(i ..< i + needle.count)
                i += needle.count
            } else {
                i += 1
            }
        }
        return found
    }
}
