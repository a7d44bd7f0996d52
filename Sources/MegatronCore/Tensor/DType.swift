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
}
