/// A run stopped by what happened in training: a non-finite loss or gradient under
/// --check-for-nan-in-loss-and-grad, or gradients that overflow a constant loss scale. The
/// message names the iteration.
public struct TrainingError: Error, CustomStringConvertible, Equatable {
    public let iteration: Int
    public let description: String

    public init(iteration: Int, _ description: String) {
        self.iteration = iteration
        self.description = "iteration \(iteration): \(description)"
    }
}
