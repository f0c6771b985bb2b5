//===- MixerBase.td - mixer dialect definition and enums ---*- tablegen -*-===//

#ifndef MIXER_BASE_TD
#define MIXER_BASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/EnumAttr.td"
include "dialects/mixer/GradientInterface.td"

def Mixer_Dialect : Dialect {
  let name = "mixer";
  let summary = "Model-level operations of mixing + mixture-of-experts transformers";
  let description = [{
    One op per model-level operation of Sparse Mixer, Fast Sparse Mixer, BERT,
    FNet and sigma-MoE models, on statically shaped tensors. The frontend emits
    the high-level ops (`mixer.moe`, `mixer.sigma_moe`); passes decompose, fuse
    and select algorithms before lowering to the runtime dialect `mixrt`.
  }];
  let cppNamespace = "::mixer::graph";
  let useDefaultAttributePrinterParser = 1;
}

def Mixer_Activation : I32EnumAttr<"Activation", "pointwise activation", [
    I32EnumAttrCase<"none", 0>, I32EnumAttrCase<"gelu", 1>,
    I32EnumAttrCase<"tanh", 2>, I32EnumAttrCase<"relu", 3>]> {
  let cppNamespace = "::mixer::graph";
  let genSpecializedAttr = 0;
}
def Mixer_ActivationAttr : EnumAttr<Mixer_Dialect, Mixer_Activation, "activation">;

def Mixer_Routing : I32EnumAttr<"Routing", "MoE routing algorithm", [
    I32EnumAttrCase<"experts_choose", 0>, I32EnumAttrCase<"tokens_choose", 1>,
    I32EnumAttrCase<"sigmoid_topk", 2>]> {
  let cppNamespace = "::mixer::graph";
  let genSpecializedAttr = 0;
}
def Mixer_RoutingAttr : EnumAttr<Mixer_Dialect, Mixer_Routing, "routing">;

def Mixer_MixAlgorithm : I32EnumAttr<"MixAlgorithm",
    "how a spectral or structured mixing layer is computed", [
    I32EnumAttrCase<"automatic", 0, "auto">, I32EnumAttrCase<"fft", 1>,
    I32EnumAttrCase<"matmul", 2>]> {
  let cppNamespace = "::mixer::graph";
  let genSpecializedAttr = 0;
}
def Mixer_MixAlgorithmAttr : EnumAttr<Mixer_Dialect, Mixer_MixAlgorithm, "algorithm">;

def Mixer_NoiseKind : I32EnumAttr<"NoiseKind",
    "multiplicative training noise of mixer.random_scale", [
    I32EnumAttrCase<"dropout", 0>, I32EnumAttrCase<"jitter", 1>]> {
  let cppNamespace = "::mixer::graph";
  let genSpecializedAttr = 0;
}
def Mixer_NoiseKindAttr : EnumAttr<Mixer_Dialect, Mixer_NoiseKind, "noise">;

class Mixer_Op<string mnemonic, list<Trait> traits = []>
    : Op<Mixer_Dialect, mnemonic, traits>;

def Mixer_F32Tensor : RankedTensorOf<[F32]>;
def Mixer_I32Tensor : RankedTensorOf<[I32]>;
/// 0-d tensors; buildable, so that assembly formats need not spell them.
def Mixer_F32Scalar : 0DTensorOf<[F32]> {
  let builderCall = "::mlir::RankedTensorType::get({}, $_builder.getF32Type())";
}
def Mixer_I32Scalar : 0DTensorOf<[I32]> {
  let builderCall =
      "::mlir::RankedTensorType::get({}, $_builder.getIntegerType(32))";
}

#endif // MIXER_BASE_TD
