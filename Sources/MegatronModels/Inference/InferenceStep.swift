/// The tokens one forward pass adds to the sequences of a running batch (a ragged batch: each
/// sequence brings its own number of tokens, a whole prompt when it joins, one token per step after),
/// and which of their rows need logits.
public struct InferenceStep: Sendable {
    public struct Sequence: Sendable {
        /// The sequence's blocks in the paged cache, enough for cachedLength + tokens.count positions.
        public var blocks: [Int32]
        /// Positions already in the cache; the new tokens take the next ones.
        public var cachedLength: Int
        public var tokens: [Int32]
        /// Logits for every new token (log-probabilities of a prompt), or only the last (the next token's).
        public var allLogits: Bool

        public init(blocks: [Int32], cachedLength: Int, tokens: [Int32], allLogits: Bool = false) {
            self.blocks = blocks
            self.cachedLength = cachedLength
            self.tokens = tokens
            self.allLogits = allLogits
        }

        /// Rows of logits this sequence gets.
        public var logitRows: Int { allLogits ? tokens.count : 1 }
    }

    public var sequences: [Sequence]

    public init(sequences: [Sequence]) { self.sequences = sequences }
}
