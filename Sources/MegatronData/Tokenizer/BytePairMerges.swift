/// The merge rules of a BPE vocabulary: for an adjacent pair of ids, its rank (lower merges first)
/// and the id of the merged token. `apply` merges, over and over, the lowest-ranked adjacent pair
/// (the leftmost among equals) until no listed pair is adjacent — the rule of GPT-2's encoder,
/// `tokenizers`' BPE model and tiktoken alike.
struct BytePairMerges: Sendable {
    private var table: [UInt64: (rank: Int32, merged: Int32)] = [:]

    init() {}

    private static func key(_ left: Int32, _ right: Int32) -> UInt64 { UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right)) }

    /// Adds a rule; a pair listed again takes its later rank (as `tokenizers` loads merges).
    mutating func add(_ left: Int32, _ right: Int32, rank: Int32, merged: Int32) {
        table[Self.key(left, right)] = (rank, merged)
    }

    var count: Int { table.count }

    func rule(_ left: Int32, _ right: Int32) -> (rank: Int32, merged: Int32)? { table[Self.key(left, right)] }

    /// Merges `parts` in place. Short inputs rescan for the best pair after each merge (O(n²), the
    /// fastest for words); long ones (a SentencePiece-style text without pre-tokenization) keep
    /// the candidate pairs in a heap over a linked list of symbols (O(n log n)).
    func apply(_ parts: inout [Int32]) {
        if parts.count <= 48 { applyByRescanning(&parts) } else { applyWithHeap(&parts) }
    }

    private func applyByRescanning(_ parts: inout [Int32]) {
        while parts.count > 1 {
            var best: (rank: Int32, index: Int, merged: Int32)?
            for i in 0 ..< parts.count - 1 {
                if let m = table[Self.key(parts[i], parts[i + 1])], m.rank < (best?.rank ?? .max) {
                    best = (m.rank, i, m.merged)
                }
            }
            guard let best else { return }
            parts[best.index] = best.merged
            parts.remove(at: best.index + 1)
        }
    }

    /// A candidate merge of the symbol at `left` with its right neighbour, valid while both still
    /// hold the ids it was made from.
    private struct Candidate: Comparable {
        var rank: Int32, left: Int32, leftID: Int32, rightID: Int32, merged: Int32
        static func < (a: Self, b: Self) -> Bool { (a.rank, a.left) < (b.rank, b.left) }
    }

    private func applyWithHeap(_ parts: inout [Int32]) {
        let n = parts.count
        var ids = parts
        var next = Array(1 ... n)          // n: none
        var previous = Array(-1 ..< n - 1)  // -1: none
        var heap = MinHeap<Candidate>()
        func consider(_ left: Int) {
            let right = next[left]
            guard right < n, let m = table[Self.key(ids[left], ids[right])] else { return }
            heap.push(Candidate(rank: m.rank, left: Int32(left), leftID: ids[left], rightID: ids[right], merged: m.merged))
        }
        for i in 0 ..< n - 1 { consider(i) }
        while let c = heap.pop() {
            let left = Int(c.left), right = next[left]
            guard ids[left] == c.leftID, right < n, ids[right] == c.rightID else { continue }   // stale
            ids[left] = c.merged
            ids[right] = -1
            next[left] = next[right]
            if next[right] < n { previous[next[right]] = left }
            if previous[left] >= 0 { consider(previous[left]) }
            consider(left)
        }
        parts.removeAll(keepingCapacity: true)
        var i = 0
        while i < n { parts.append(ids[i]); i = next[i] }
    }
}

/// A binary min-heap.
struct MinHeap<Element: Comparable> {
    private var items: [Element] = []

    mutating func push(_ item: Element) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child] < items[parent] else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Element? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var smallest = parent
                if left < items.count && items[left] < items[smallest] { smallest = left }
                if right < items.count && items[right] < items[smallest] { smallest = right }
                if smallest == parent { break }
                items.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return top
    }
}
