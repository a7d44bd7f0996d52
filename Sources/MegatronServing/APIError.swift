/// A request the server refuses: the HTTP status (a 4xx) and the message the client reads.
public struct APIError: Error, CustomStringConvertible, Equatable {
    public let status: Int
    public let description: String

    public init(_ description: String, status: Int = 400) {
        self.status = status
        self.description = description
    }
}

/// Reading a request's fields with the checks each API makes; `error` makes the API's own message.
struct FieldReader {
    let fields: [String: JSONValue]

    /// The fields of a JSON object body; unknown names are refused.
    init(_ body: JSONValue?, known: Set<String>) throws(APIError) {
        guard case .object(let fields)? = body else { throw APIError("the request body is not a JSON object") }
        if let unknown = fields.keys.sorted().first(where: { !known.contains($0) }) {
            throw APIError("unknown field \"\(unknown)\"; the fields are \(known.sorted().joined(separator: ", "))")
        }
        self.fields = fields
    }

    func has(_ name: String) -> Bool { fields[name].map { $0 != .null } ?? false }

    func bool(_ name: String, default value: Bool, _ message: String) throws(APIError) -> Bool {
        switch fields[name] {
        case nil, .null?: return value
        case .bool(let b)?: return b
        default: throw APIError(message)
        }
    }

    func int(_ name: String, default value: Int, _ message: String) throws(APIError) -> Int {
        switch fields[name] {
        case nil, .null?: return value
        case .int(let i)?: return i
        default: throw APIError(message)
        }
    }

    func number(_ name: String, default value: Double, _ message: String) throws(APIError) -> Double {
        switch fields[name] {
        case nil, .null?: return value
        case let field?: guard let x = field.number else { throw APIError(message) }; return x
        }
    }
}
