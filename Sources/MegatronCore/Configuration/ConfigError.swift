/// A run's configuration refused: a flag's value, or flags that do not fit together. `flag` is the
/// flag at fault in Megatron's spelling (the first of several); the message, which names it, says
/// what was expected. The command line reports it as a usage error.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let flag: String
    public let message: String

    public init(flag: String, _ message: String) {
        self.flag = flag
        self.message = message
    }

    public var description: String { message }
}
