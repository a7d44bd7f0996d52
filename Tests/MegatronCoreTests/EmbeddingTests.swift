import Foundation
import MegatronCore
import Testing

@Suite struct EmbeddingTests {
    @Test func forwardGathersAndAddsPositions() throws {
        var rng = TestRandom(seed: 30)
        let (vocab, maxPos, h) = (10, 6, 5)
        let word = rng.floats(vocab * h), pos = rng.floats(maxPos * h)
        let tokenIds = [3, 0, 9, 3], positionIds = [0, 1, 2, 5]
        let out = try Embedding.forward(ids: ids(tokenIds), word: tensor(word, [vocab, h]), position: tensor(pos, [maxPos, h]),
                                        positions: ids(positionIds), on: serial)
        let expected = (0 ..< 4).flatMap { t in (0 ..< h).map { c in Double(word[tokenIds[t] * h + c] + pos[positionIds[t] * h + c]) } }
        expectClose(out.toFloatArray(), expected, tolerance: 0, "embedding")
    }

    @Test func backwardScatterAddsRepeatedIds() throws {
        var rng = TestRandom(seed: 31)
        let (vocab, h, tokens) = (7, 4, 9)
        let tokenIds = (0 ..< tokens).map { _ in rng.int(below: 3) }  // many repeats
        let positionIds = (0 ..< tokens).map { $0 % 4 }
        let dy = rng.floats(tokens * h)
        let dWord = try Tensor(shape: [vocab, h], on: serial), dPos = try Tensor(shape: [4, h], on: serial)
        try Embedding.backward(tensor(dy, [tokens, h]), ids: ids(tokenIds), positions: ids(positionIds),
                               gradWord: dWord, gradPosition: dPos, on: serial)
        var expectedWord = [Double](repeating: 0, count: vocab * h), expectedPos = [Double](repeating: 0, count: 4 * h)
        for t in 0 ..< tokens {
            for c in 0 ..< h {
                expectedWord[tokenIds[t] * h + c] += Double(dy[t * h + c])
                expectedPos[positionIds[t] * h + c] += Double(dy[t * h + c])
            }
        }
        expectClose(dWord.toFloatArray(), expectedWord, tolerance: 1e-6, "dword")
        expectClose(dPos.toFloatArray(), expectedPos, tolerance: 1e-6, "dposition")
    }

    @Test func backwardMatchesFiniteDifferences() throws {
        var rng = TestRandom(seed: 35)
        let (vocab, maxPos, h) = (5, 4, 3)
        let word = rng.floats(vocab * h), pos = rng.floats(maxPos * h)
        let tokenIds = [1, 4, 1, 0, 1], positionIds = [0, 1, 2, 3, 0], w = rng.floats(tokenIds.count * h)
        func reference(_ word: [Double], _ pos: [Double]) -> [Double] {
            (0 ..< tokenIds.count).flatMap { t in (0 ..< h).map { c in word[tokenIds[t] * h + c] + pos[positionIds[t] * h + c] } }
        }
        let dWord = try Tensor(shape: [vocab, h], on: serial), dPos = try Tensor(shape: [maxPos, h], on: serial)
        try Embedding.backward(tensor(w, [tokenIds.count, h]), ids: ids(tokenIds), positions: ids(positionIds),
                               gradWord: dWord, gradPosition: dPos, on: serial)
        expectClose(dWord.toFloatArray(), finiteDifferences(word.doubles) { weightedSum(reference($0, pos.doubles), w) },
                    tolerance: 1e-6, "dword")
        expectClose(dPos.toFloatArray(), finiteDifferences(pos.doubles) { weightedSum(reference(word.doubles, $0), w) },
                    tolerance: 1e-6, "dposition")
    }

    @Test func threadsSplitColumnsWithoutRaces() throws {
        var rng = TestRandom(seed: 32)
        let (vocab, h, tokens) = (50, 768, 1024)
        let tokenIds = (0 ..< tokens).map { _ in rng.int(below: vocab) }, dy = rng.floats(tokens * h)
        var results: [[Float]] = []
        for device in [serial, parallel] {
            let dWord = try Tensor(shape: [vocab, h], on: device)
            try Embedding.backward(tensor(dy, [tokens, h], on: device), ids: ids(tokenIds, on: device), gradWord: dWord, on: device)
            results.append(dWord.toFloatArray())
        }
        #expect(results[0] == results[1])
    }

    @Test func outOfRangeIdIsNamed() {
        #expect {
            _ = try Embedding.forward(ids: ids([1, 12]), word: tensor([Float](repeating: 0, count: 20), [10, 2]), on: serial)
        } throws: { "\($0)" == "Embedding: token id 12 at index 1 is outside the vocabulary of 10 rows" }
    }
}

@Suite struct RotaryEmbeddingTests {
    /// Double-precision rotate-half RoPE of one head vector at position t.
    func reference(_ x: [Double], position t: Int, rotaryDim: Int, base: Double) -> [Double] {
        var y = x
        let half = rotaryDim / 2
        for i in 0 ..< half {
            let angle = Double(t) * pow(base, -Double(2 * i) / Double(rotaryDim))
            y[i] = x[i] * cos(angle) - x[i + half] * sin(angle)
            y[i + half] = x[i + half] * cos(angle) + x[i] * sin(angle)
        }
        return y
    }

    @Test func rotatesPartialHeadsAndInvertsExactly() throws {
        var rng = TestRandom(seed: 33)
        let (tokens, d, rotaryDim) = (5, 8, 4)  // rotary-percent 0.5
        let width = 3 * d, offsets = [0, d, 2 * d]
        let x = rng.floats(tokens * width)
        let positionIds = [0, 1, 7, 30, 2]
        let rope = try RotaryEmbedding(rotaryDim: rotaryDim, base: 10000, maxPositions: 32, on: serial)
        let t = tensor(x, [tokens, width])
        try rope.apply(to: t, headOffsets: offsets, positions: ids(positionIds), on: serial)
        var expected: [Double] = []
        for token in 0 ..< tokens {
            for head in 0 ..< 3 {
                let start = token * width + head * d
                let v = Array(x[start ..< start + d]).doubles
                expected += reference(v, position: positionIds[token], rotaryDim: rotaryDim, base: 10000)
            }
        }
        expectClose(t.toFloatArray(), expected, tolerance: 1e-5, "rope")
        // The backward is the inverse rotation: forward then inverse is the identity.
        try rope.apply(to: t, headOffsets: offsets, positions: ids(positionIds), inverse: true, on: serial)
        expectClose(t.toFloatArray(), x.doubles, tolerance: 1e-6, "inverse")
    }

    @Test func backwardMatchesFiniteDifferences() throws {
        var rng = TestRandom(seed: 34)
        let (tokens, d) = (3, 6)
        let x = rng.floats(tokens * d), w = rng.floats(tokens * d), positionIds = [4, 9, 1]
        let rope = try RotaryEmbedding(rotaryDim: d, base: 500, maxPositions: 16, on: serial)
        let grad = tensor(w, [tokens, d])
        try rope.apply(to: grad, headOffsets: [0], positions: ids(positionIds), inverse: true, on: serial)
        let fd = finiteDifferences(x.doubles) { v in
            weightedSum((0 ..< tokens).flatMap { t in
                reference(Array(v[t * d ..< (t + 1) * d]), position: positionIds[t], rotaryDim: d, base: 500) }, w)
        }
        expectClose(grad.toFloatArray(), fd, tolerance: 1e-5, "dx")
    }
}
