//===- MixerBase.td - mixer dialect definition and enums ---*- tablegen -*-===//

#ifndef MIXER_BASE_TD
#define MIXER_BASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/EnumAttr.td"
include "dialects/mixer/GradientInterface.td"
include "dialects/mixer/KernelInterface.td"

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
  // The function-interface attributes (MixerDialect.h) are checked where
  // they are attached.
  let hasOperationAttrVerify = 1;
  let hasRegionArgAttrVerify = 1;
  let hasRegionResultAttrVerify = 1;
}

def Mixer_Activation : I32EnumAttr<"Activation", "pointwise activation", [
    I32EnumAttrCase<"none", 0>, I32EnumAttrCase<"gelu", 1>,
    I32EnumAttrCase<"tanh", 2>, I32EnumAttrCase<"relu", 3>,
    I32EnumAttrCase<"gelu_erf", 4>]> {
  let cppNamespace = "::mixer::graph";
  let genSpecializedAttr = 0;
}
def Mixer_ActivationAttr : EnumAttr<Mixer_Dialect, Mixer_Activation, "activation">;

def Mixer_PoolMode : I32EnumAttr<"PoolMode",
    "how mixer.pool reduces a sequence to one row", [
    I32EnumAttrCase<"cls", 0>, I32EnumAttrCase<"mean", 1>]> {
  let cppNamespace = "::mixer::graph";
  let genSpecializedAttr = 0;
}
def Mixer_PoolModeAttr : EnumAttr<Mixer_Dialect, Mixer_PoolMode, "pool_mode">;

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

/// A mixer op. An op that one plan kernel runs operand for operand sets
/// `kernel` to the kernel's enumerator (mixer::Kernel, from
/// runtime/support/Kernels.def) and lists in `kernelAttributeNames` the
/// [op name, kernel name] pairs of attributes the kernel names differently:
/// the op then implements Mixer_KernelOpInterface, and the C++ compiler checks
/// that the op has the kernel's operands and attributes (of the kernel's
/// types) and every attribute the kernel requires. Ops lowered by hand (the
/// kernel depends on the op, or takes other operands) leave `kernel` empty.
class Mixer_Op<string mnemonic, list<Trait> props = []>
    : Op<Mixer_Dialect, mnemonic, props> {
  string kernel = "";
  list<list<string>> kernelAttributeNames = [];

  // What the kernel checks read off `arguments`: the number of ODS operands,
  // and per attribute its kernel name and kernel type.
  int odsOperandCount = !foldl(0, !range(!size(arguments)), count, i,
      !if(!initialized(!getdagarg<TypeConstraint>(arguments, i)),
          !add(count, 1), count));
  list<string> odsAttributeNames = !foldl([]<string>,
      !range(!size(arguments)), names, i,
      !if(!initialized(!getdagarg<Attr>(arguments, i)),
          !listconcat(names, [!getdagname(arguments, i)]), names));
  list<string> kernelAttributes = !foreach(name, odsAttributeNames,
      !foldl(name, kernelAttributeNames, renamed, pair,
             !if(!eq(pair[0], name), pair[1], renamed)));
  list<string> kernelAttributeTypes = !foreach(name, odsAttributeNames,
      !foldl("String", [["UnitAttr", "Bool"], ["BoolAttr", "Bool"],
                        ["IntegerAttr", "Int"], ["FloatAttr", "Real"]],
             type, storage,
             !if(!ne(!find(!getdagarg<Attr>(arguments, name).storageType,
                           storage[0]), -1),
                 storage[1], type)));

  let traits = !listconcat(props, !if(!empty(kernel), [],
      [DeclareOpInterfaceMethods<Mixer_KernelOpInterface>]));
  defvar kernelEnumerator = "::mixer::Kernel::" # kernel;
  defvar where = "mixer." # mnemonic # " (kernel " # kernel # "): ";
  defvar info = "::mixer::kernelInfo(" # kernelEnumerator # ")";
  let extraClassDefinition = !if(!empty(kernel), "", [{
    ::mixer::Kernel $cppClass::getKernel() { return }] # kernelEnumerator # [{; }

    ::llvm::StringRef $cppClass::getKernelAttributeName(::llvm::StringRef name) {
    }] # !interleave(!foreach(pair, kernelAttributeNames,
        "if (name == \"" # pair[0] # "\") return \"" # pair[1] # "\";"),
        "\n") # [{
      return name;
    }

    ::llvm::SmallVector<::mlir::Value> $cppClass::getKernelOperands() {
      return ::mixer::graph::kernelOperands(*this, }] # odsOperandCount # [{);
    }

    static_assert(}] # info # ".operands.size() == " # odsOperandCount # [{,
                  "}] # where # [{the op's operands are not the kernel's");
    static_assert(}] # info # ".requiresOnly({" #
        !interleave(!foreach(name, kernelAttributes, "\"" # name # "\""),
                    ", ") # [{}),
                  "}] # where # [{the op lacks an attribute the kernel requires");
    }] # !interleave(!foreach(i, !range(!size(kernelAttributes)),
        "static_assert(" # info # ".hasAttribute(\"" # kernelAttributes[i] #
        "\", ::mixer::AttrType::" # kernelAttributeTypes[i] # "), \"" #
        where # "the kernel has no attribute " # kernelAttributes[i] #
        " of the type of " # odsAttributeNames[i] # "\");"),
        "\n"));
}

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
