/// A regular expression compiled for a backtracking matcher over Unicode scalars: the pre-tokenizer
/// patterns of tokenizer files (GPT-2's, Llama-3's, Qwen2's, DeepSeek's, tiktoken's), matched with
/// the leftmost-first semantics of the engines those files are written for (Oniguruma, fancy-regex).
/// The syntax it reads is `RegexParser`'s.
///
/// The program is a list of instructions per (sub)program: program 0 is the expression; atomic
/// groups, possessive repetitions and lookaheads run their own program to their first match.
/// A repetition of one scalar set (`\p{L}+`, `\s*`, `\p{N}{1,3}`) is one `run` instruction that
/// consumes the longest run and, when greedy, backs off one scalar at a time from one stack frame.
public struct UnicodeRegex: Sendable {
    enum Instruction {
        /// Consume one scalar of `sets[set]`.
        case set(Int)
        /// Consume `min` … `max` scalars of `sets[set]`, as many as there are; `backtrack`: give
        /// them back one by one when what follows fails (greedy), or never (possessive).
        case run(set: Int, min: Int, max: Int, backtrack: Bool)
        /// Go on at `preferred`; on failure, at `otherwise` from the same position.
        case split(preferred: Int, otherwise: Int)
        case jump(Int)
        /// Run program `program` here and continue after its first match, never revisiting it.
        case atomic(program: Int)
        /// Continue (consuming nothing) when program `program` matches here (`negated`: when not).
        case lookahead(program: Int, negated: Bool)
        case match
    }

    public let pattern: String
    let sets: [ScalarSet]
    let programs: [[Instruction]]

    public init(_ pattern: String) throws {
        var compiler = Compiler()
        compiler.programs = [[]]
        compiler.emit(try RegexParser.parse(pattern), into: 0)
        compiler.programs[0].append(.match)
        self.pattern = pattern
        sets = compiler.sets
        programs = compiler.programs
    }

    /// The matches in `text.scalars[range]`, left to right, each starting where the previous ended
    /// or later; after an empty match the search goes on one scalar further (Oniguruma's
    /// `find_iter`). The range bounds the text: lookaheads see its end.
    public func matches(in text: ClassifiedText, range: Range<Int>) -> [Range<Int>] {
        var found: [Range<Int>] = []
        var stack: [Frame] = []
        text.scalars.withUnsafeBufferPointer { scalars in
            text.classes.withUnsafeBufferPointer { classes in
                let input = Input(scalars: scalars, classes: classes, end: range.upperBound)
                var start = range.lowerBound
                while start < range.upperBound {
                    if let end = run(0, from: start, input, &stack) {
                        found.append(start ..< end)
                        start = end > start ? end : start + 1
                    } else {
                        start += 1
                    }
                }
            }
        }
        return found
    }

    public func matches(in text: ClassifiedText) -> [Range<Int>] { matches(in: text, range: 0 ..< text.scalars.count) }

    struct Input {
        let scalars: UnsafeBufferPointer<UInt32>
        let classes: UnsafeBufferPointer<UInt32>
        let end: Int
    }

    /// A saved alternative: resume at `pc` from `position`; for a greedy run, `low` ≥ 0 is the
    /// shortest the run may shrink to, and each retry gives back one more scalar.
    struct Frame {
        var pc: Int32
        var position: Int32
        var low: Int32
    }

    /// The end of the first match of program `program` starting at `start`, or nil.
    private func run(_ program: Int, from start: Int, _ input: Input, _ stack: inout [Frame]) -> Int? {
        let code = programs[program]
        let base = stack.count
        defer { stack.removeSubrange(base...) }
        var pc = 0, position = start
        while true {
            var failed = false
            switch code[pc] {
            case .set(let set):
                if position < input.end && sets[set].contains(input.scalars[position], input.classes[position]) {
                    position += 1
                    pc += 1
                } else {
                    failed = true
                }
            case .run(let set, let min, let max, let backtrack):
                let limit = max >= input.end - position ? input.end : position + max
                var end = position
                let scalarSet = sets[set]
                while end < limit && scalarSet.contains(input.scalars[end], input.classes[end]) { end += 1 }
                if end - position < min {
                    failed = true
                } else {
                    if backtrack && end - position > min {
                        stack.append(Frame(pc: Int32(pc + 1), position: Int32(end), low: Int32(position + min)))
                    }
                    position = end
                    pc += 1
                }
            case .split(let preferred, let otherwise):
                stack.append(Frame(pc: Int32(otherwise), position: Int32(position), low: -1))
                pc = preferred
            case .jump(let target):
                pc = target
            case .atomic(let inner):
                if let end = run(inner, from: position, input, &stack) {
                    position = end
                    pc += 1
                } else {
                    failed = true
                }
            case .lookahead(let inner, let negated):
                if (run(inner, from: position, input, &stack) != nil) != negated { pc += 1 } else { failed = true }
            case .match:
                return position
            }
            if failed {
                guard stack.count > base else { return nil }
                let frame = stack.removeLast()
                pc = Int(frame.pc)
                position = Int(frame.position)
                if frame.low >= 0 {
                    position -= 1
                    if position > Int(frame.low) { stack.append(Frame(pc: frame.pc, position: Int32(position), low: frame.low)) }
                }
            }
        }
    }

    /// Turns a `RegexNode` tree into programs.
    private struct Compiler {
        var sets: [ScalarSet] = []
        var programs: [[Instruction]] = []

        mutating func addSet(_ set: ScalarSet) -> Int {
            sets.append(set)
            return sets.count - 1
        }

        /// A new program holding `node` then `match`; its index.
        mutating func subprogram(_ node: RegexNode) -> Int {
            programs.append([])
            let index = programs.count - 1
            emit(node, into: index)
            programs[index].append(.match)
            return index
        }

        mutating func emit(_ node: RegexNode, into p: Int) {
            switch node {
            case .set(let set):
                programs[p].append(.set(addSet(set)))
            case .sequence(let nodes):
                for node in nodes { emit(node, into: p) }
            case .alternation(let alternatives):
                var jumps: [Int] = []
                for (i, alternative) in alternatives.enumerated() {
                    let split = programs[p].count
                    if i < alternatives.count - 1 { programs[p].append(.jump(-1)) }   // patched below
                    emit(alternative, into: p)
                    if i < alternatives.count - 1 {
                        jumps.append(programs[p].count)
                        programs[p].append(.jump(-1))
                        programs[p][split] = .split(preferred: split + 1, otherwise: programs[p].count)
                    }
                }
                for jump in jumps { programs[p][jump] = .jump(programs[p].count) }
            case .atomic(let inner):
                programs[p].append(.atomic(program: subprogram(inner)))
            case .lookahead(let inner, let negated):
                programs[p].append(.lookahead(program: subprogram(inner), negated: negated))
            case .repetition(let inner, let min, let max, let mode):
                if case .set(let set) = inner, mode != .lazy {
                    programs[p].append(.run(set: addSet(set), min: min, max: max ?? Int.max, backtrack: mode == .greedy))
                } else if mode == .possessive {
                    programs[p].append(.atomic(program: subprogram(.repetition(inner, min: min, max: max, mode: .greedy))))
                } else {
                    emitRepetition(inner, min: min, max: max, lazy: mode == .lazy, into: p)
                }
            }
        }

        /// `min` copies of `inner`, then optional ones: `max − min` nested, or a loop when unbounded.
        private mutating func emitRepetition(_ inner: RegexNode, min: Int, max: Int?, lazy: Bool, into p: Int) {
            for _ in 0 ..< min { emit(inner, into: p) }
            func split(at index: Int, take: Int, skip: Int) -> Instruction {
                lazy ? .split(preferred: skip, otherwise: take) : .split(preferred: take, otherwise: skip)
            }
            if let max {
                var splits: [Int] = []
                for _ in min ..< max {
                    splits.append(programs[p].count)
                    programs[p].append(.jump(-1))
                    emit(inner, into: p)
                }
                let end = programs[p].count
                for s in splits { programs[p][s] = split(at: s, take: s + 1, skip: end) }
            } else {
                let loop = programs[p].count
                programs[p].append(.jump(-1))
                emit(inner, into: p)
                programs[p].append(.jump(loop))
                programs[p][loop] = split(at: loop, take: loop + 1, skip: programs[p].count)
            }
        }
    }
}
