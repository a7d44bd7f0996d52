import ArgumentParser
import MegatronModels
import MegatronTraining

// The library's choices, spelled on the command line as Megatron spells them (their raw values);
// a value outside them is refused while parsing, naming the flag and the choices, and each flag's
// help lists them.
extension TransformerConfig.PositionEmbedding: ExpressibleByArgument {}
extension TransformerConfig.Normalization: ExpressibleByArgument {}
extension Optimizer.Kind: ExpressibleByArgument {}
extension OptimizerParamScheduler.DecayStyle: ExpressibleByArgument {}
extension OptimizerParamScheduler.WSDDecayStyle: ExpressibleByArgument {}
extension OptimizerParamScheduler.WeightDecayIncrement.Style: ExpressibleByArgument {}
extension ActivationRecompute.Method: ExpressibleByArgument {}
extension ActivationRecompute.Module: ExpressibleByArgument {}
extension CheckpointFormat: ExpressibleByArgument {}
