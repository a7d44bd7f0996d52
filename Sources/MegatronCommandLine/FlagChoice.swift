import ArgumentParser

/// The case of `T` spelled `value` on the command line, or an error naming `flag` and listing the
/// choices: "--optimizer adamw: expected adam or sgd".
public func flagChoice<T: RawRepresentable & CaseIterable>(_ value: String, flag: String) throws -> T where T.RawValue == String {
    if let choice = T(rawValue: value) { return choice }
    let names = T.allCases.map(\.rawValue)
    let list = names.count > 1 ? names.dropLast().joined(separator: ", ") + " or " + names.last! : names.joined()
    throw ValidationError("\(flag) \(value): expected \(list)")
}
