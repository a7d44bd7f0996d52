/// GPT-2's reversible map between bytes and printable characters: the printable Latin-1 bytes
/// (! … ~, ¡ … ¬, ® … ÿ) stand for themselves, the other 68 bytes for U+0100 onwards, in byte order.
struct ByteLevelAlphabet: Sendable {
    static let shared = ByteLevelAlphabet()

    let byteOfScalar: [UInt32: UInt8]

    init() {
        var map: [UInt32: UInt8] = [:]
        var next: UInt32 = 256
        for b in 0 ..< 256 {
            let printable = (0x21 ... 0x7E).contains(b) || (0xA1 ... 0xAC).contains(b) || (0xAE ... 0xFF).contains(b)
            if printable {
                map[UInt32(b)] = UInt8(b)
            } else {
                map[next] = UInt8(b)
                next += 1
            }
        }
        byteOfScalar = map
    }

    /// The bytes a vocabulary token stands for, or nil if it has a character outside the alphabet.
    func bytes(of token: String) -> [UInt8]? {
        var out: [UInt8] = []
        for s in token.unicodeScalars {
            guard let b = byteOfScalar[s.value] else { return nil }
            out.append(b)
        }
        return out
    }
}
