/// A text as the pattern matcher reads it: its Unicode scalars and, for each, one bit for its
/// general category (`ScalarSet.categoryBit`) or'ed with `ScalarSet.whitespaceBit` when it has the
/// White_Space property. Classified once per text, so a character class is a mask test.
public struct ClassifiedText {
    public let scalars: [UInt32]
    let classes: [UInt32]

    public init(_ scalars: [UInt32]) {
        self.scalars = scalars
        classes = scalars.map(ScalarSet.classBits)
    }

    public init(_ text: Substring) { self.init(text.unicodeScalars.map(\.value)) }
    public init(_ text: String) { self.init(text.unicodeScalars.map(\.value)) }
}

/// A set of Unicode scalars: what one step of a regular expression consumes (`a`, `.`, `\p{L}`,
/// `[^\s\p{L}\p{N}]`, …). ASCII membership is a 128-bit table; beyond ASCII a scalar is in the set
/// when its category/whitespace bits meet `classes`, or it lies in one of `ranges`, or its bits
/// miss one of `excludedClasses` (items such as `\S` or `\P{L}` inside brackets), all flipped when
/// the set is negated.
struct ScalarSet: Sendable {
    private var asciiLow: UInt64 = 0, asciiHigh: UInt64 = 0
    private var classes: UInt32 = 0
    private var ranges: [ClosedRange<UInt32>] = []
    private var excludedClasses: [UInt32] = []
    private var negated = false

    static let whitespaceBit: UInt32 = 1 << 30

    /// The bit of a general category: 0 … 29 in `Unicode.GeneralCategory`'s order.
    static func categoryBit(_ category: Unicode.GeneralCategory) -> UInt32 {
        let index: UInt32 = switch category {
        case .uppercaseLetter: 0
        case .lowercaseLetter: 1
        case .titlecaseLetter: 2
        case .modifierLetter: 3
        case .otherLetter: 4
        case .nonspacingMark: 5
        case .spacingMark: 6
        case .enclosingMark: 7
        case .decimalNumber: 8
        case .letterNumber: 9
        case .otherNumber: 10
        case .connectorPunctuation: 11
        case .dashPunctuation: 12
        case .openPunctuation: 13
        case .closePunctuation: 14
        case .initialPunctuation: 15
        case .finalPunctuation: 16
        case .otherPunctuation: 17
        case .mathSymbol: 18
        case .currencySymbol: 19
        case .modifierSymbol: 20
        case .otherSymbol: 21
        case .spaceSeparator: 22
        case .lineSeparator: 23
        case .paragraphSeparator: 24
        case .control: 25
        case .format: 26
        case .surrogate: 27
        case .privateUse: 28
        case .unassigned: 29
        @unknown default: 29
        }
        return 1 << index
    }

    /// The category and whitespace bits of one scalar.
    static func classBits(_ value: UInt32) -> UInt32 {
        if value < 128 { return asciiClassBits[Int(value)] }
        guard let scalar = Unicode.Scalar(value) else { return categoryBit(.surrogate) }
        let properties = scalar.properties
        return categoryBit(properties.generalCategory) | (properties.isWhitespace ? whitespaceBit : 0)
    }

    private static let asciiClassBits: [UInt32] = (0 ..< 128).map { value in
        let properties = Unicode.Scalar(UInt8(value)).properties
        return categoryBit(properties.generalCategory) | (properties.isWhitespace ? whitespaceBit : 0)
    }

    /// The bits of a property name as `\p{…}` writes it (general categories, long or short, and
    /// White_Space), or nil for one this matcher does not know (scripts, blocks, …).
    static func propertyBits(_ name: String) -> UInt32? {
        let categories: [Unicode.GeneralCategory]
        switch name.replacingOccurrences(of: "_", with: "").replacingOccurrences(of: " ", with: "").lowercased() {
        case "l", "letter": categories = [.uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter]
        case "lc", "l&", "casedletter": categories = [.uppercaseLetter, .lowercaseLetter, .titlecaseLetter]
        case "lu", "uppercaseletter": categories = [.uppercaseLetter]
        case "ll", "lowercaseletter": categories = [.lowercaseLetter]
        case "lt", "titlecaseletter": categories = [.titlecaseLetter]
        case "lm", "modifierletter": categories = [.modifierLetter]
        case "lo", "otherletter": categories = [.otherLetter]
        case "m", "mark", "combiningmark": categories = [.nonspacingMark, .spacingMark, .enclosingMark]
        case "mn", "nonspacingmark": categories = [.nonspacingMark]
        case "mc", "spacingmark": categories = [.spacingMark]
        case "me", "enclosingmark": categories = [.enclosingMark]
        case "n", "number": categories = [.decimalNumber, .letterNumber, .otherNumber]
        case "nd", "decimalnumber", "digit": categories = [.decimalNumber]
        case "nl", "letternumber": categories = [.letterNumber]
        case "no", "othernumber": categories = [.otherNumber]
        case "p", "punctuation", "punct":
            categories = [.connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
                          .initialPunctuation, .finalPunctuation, .otherPunctuation]
        case "pc", "connectorpunctuation": categories = [.connectorPunctuation]
        case "pd", "dashpunctuation": categories = [.dashPunctuation]
        case "ps", "openpunctuation": categories = [.openPunctuation]
        case "pe", "closepunctuation": categories = [.closePunctuation]
        case "pi", "initialpunctuation": categories = [.initialPunctuation]
        case "pf", "finalpunctuation": categories = [.finalPunctuation]
        case "po", "otherpunctuation": categories = [.otherPunctuation]
        case "s", "symbol": categories = [.mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol]
        case "sm", "mathsymbol": categories = [.mathSymbol]
        case "sc", "currencysymbol": categories = [.currencySymbol]
        case "sk", "modifiersymbol": categories = [.modifierSymbol]
        case "so", "othersymbol": categories = [.otherSymbol]
        case "z", "separator": categories = [.spaceSeparator, .lineSeparator, .paragraphSeparator]
        case "zs", "spaceseparator": categories = [.spaceSeparator]
        case "zl", "lineseparator": categories = [.lineSeparator]
        case "zp", "paragraphseparator": categories = [.paragraphSeparator]
        case "c", "other": categories = [.control, .format, .surrogate, .privateUse, .unassigned]
        case "cc", "control", "cntrl": categories = [.control]
        case "cf", "format": categories = [.format]
        case "cs", "surrogate": categories = [.surrogate]
        case "co", "privateuse": categories = [.privateUse]
        case "cn", "unassigned": categories = [.unassigned]
        case "whitespace", "space", "wspace": return whitespaceBit
        default: return nil
        }
        return categories.reduce(0) { $0 | categoryBit($1) }
    }

    /// `\d`: decimal digits; `\w`: letters, marks, decimal digits and connector punctuation.
    static let digitBits = categoryBit(.decimalNumber)
    static let wordBits = propertyBits("L")! | propertyBits("M")! | categoryBit(.decimalNumber) | categoryBit(.connectorPunctuation)

    /// One item of a class, before the set is sealed.
    enum Item {
        case range(ClosedRange<UInt32>)
        /// Scalars whose bits meet the mask (`excluding`: whose bits miss it).
        case classes(UInt32, excluding: Bool)
    }

    /// The set of `items` (their union; its complement when `negated`).
    init(_ items: [Item], negated: Bool) {
        for item in items {
            switch item {
            case .range(let range): ranges.append(range)
            case .classes(let bits, excluding: false): classes |= bits
            case .classes(let bits, excluding: true): excludedClasses.append(bits)
            }
        }
        self.negated = negated
        for value in 0 ..< 128 where contains(UInt32(value), Self.asciiClassBits[value], useTable: false) {
            if value < 64 { asciiLow |= 1 << UInt64(value) } else { asciiHigh |= 1 << UInt64(value - 64) }
        }
    }

    /// One scalar.
    init(scalar: UInt32) { self.init([.range(scalar ... scalar)], negated: false) }

    func contains(_ value: UInt32, _ bits: UInt32) -> Bool { contains(value, bits, useTable: true) }

    @inline(__always)
    private func contains(_ value: UInt32, _ bits: UInt32, useTable: Bool) -> Bool {
        if useTable && value < 128 {
            return value < 64 ? asciiLow >> UInt64(value) & 1 == 1 : asciiHigh >> UInt64(value - 64) & 1 == 1
        }
        var inside = bits & classes != 0
        if !inside { inside = ranges.contains { $0.contains(value) } }
        if !inside { inside = excludedClasses.contains { bits & $0 == 0 } }
        return inside != negated
    }
}
