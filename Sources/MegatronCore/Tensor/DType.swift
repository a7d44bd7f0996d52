/// Element types of tensors. Narrow floats (fp16, bf16) are stored narrow and computed in fp32.
public enum DType: String, Sendable, CaseIterable, CustomStringConvertible {
    case float32
    case float16
    case bfloat16
    case int32
    case uint16

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float32, .int32: 4
        case .float16, .bfloat16, .uint16: 2
        }
    }

    public var description: String { rawValue }

    /// The dtype's name in safetensors headers ("F32", "F16", "BF16", "I32", "U16").
    public var safetensorsName: String {
        switch self {
        case .float32: "F32"
        case .float16: "F16"
        case .bfloat16: "BF16"
        case .int32: "I32"
        case .uint16: "U16"
        }
    }

    /// The dtype a safetensors header names, nil for one this library does not hold.
    public init?(safetensorsName name: String) {
        guard let dtype = DType.allCases.first(where: { $0.safetensorsName == name }) else { return nil }
        self = dtype
    }
}
