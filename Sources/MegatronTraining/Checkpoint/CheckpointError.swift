/// A checkpoint (or Hugging Face model) that cannot be read, does not fit this run, or could not be
/// written: the message names the file or directory and what was expected. Nothing already saved
/// is changed by the failure.
public struct CheckpointError: Error, CustomStringConvertible, Equatable {
    public let description: String

    public init(_ description: String) { self.description = description }
}
