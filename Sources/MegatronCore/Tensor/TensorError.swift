/// A tensor operation refused its arguments. The message names the operation and what it expected,
/// so a caller several layers up can report it without a stack trace.
public struct TensorError: Error, CustomStringConvertible, Equatable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }

    /// `operation`: `what` has shape `actual`, expected `expected`.
    static func shape(_ operation: String, _ what: String, _ actual: [Int], expected: [Int]) -> TensorError {
        TensorError("\(operation): \(what) has shape \(actual), expected \(expected)")
    }

    static func dtype(_ operation: String, _ what: String, _ actual: DType, expected: DType) -> TensorError {
        TensorError("\(operation): \(what) has dtype \(actual), expected \(expected)")
    }
}
