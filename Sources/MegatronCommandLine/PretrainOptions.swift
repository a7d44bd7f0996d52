import ArgumentParser

/// Every flag of `megatron pretrain` (Megatron-LM's pretrain_gpt.py), in its groups. Parsing checks
/// each flag alone; `PretrainPlan` checks them together.
public struct PretrainOptions: ParsableArguments, Sendable {
    public init() {}

    @OptionGroup(title: "Model") public var model: ModelArguments
    @OptionGroup(title: "Training") public var training: TrainingArguments
    @OptionGroup(title: "Mixed precision") public var precision: MixedPrecisionArguments
    @OptionGroup(title: "Activation recomputation") public var recomputation: RecomputeArguments
    @OptionGroup(title: "Data and evaluation") public var data: DataArguments
    @OptionGroup(title: "Tokenizer") public var tokenizer: TokenizerOptions
    @OptionGroup(title: "Checkpointing") public var checkpointing: CheckpointArguments
    @OptionGroup(title: "TensorBoard") public var tensorboard: TensorBoardArguments
    @OptionGroup(title: "Distributed") public var distributed: DistributedArguments
    @OptionGroup(title: "Device") public var device: DeviceOptions
    @OptionGroup(title: "Kernel implementations (Megatron's CUDA choices: one CPU implementation each)")
    public var kernelChoices: KernelChoiceArguments
    @OptionGroup(title: "Sample after training") public var sample: SampleArguments
}
